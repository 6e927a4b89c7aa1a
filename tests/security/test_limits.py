"""Issue 14, each finding a test: limits before work, one CallSid one call, unforgeable logs, the small ones.

Real servers on loopback with short limits; behaviour is asserted (closed, refused, counted, logged once),
never how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pydantic import ValidationError
from security_support import ADMIN_TOKEN, AUTH_TOKEN, all_logs, free_port, secure_settings, voice
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from hanmadi.config import Settings
from hanmadi.logs import JsonFormatter, OneLineFormatter, safe
from hanmadi.loopback import serve_in_thread, settle
from hanmadi.metrics import REGISTRY
from hanmadi.telephony import twilio as tw
from hanmadi.telephony.caller import CallerConfig, place_call
from loopback_support import read_call

pytestmark = pytest.mark.e2e

SHORT = {"start_timeout_s": 0.5, "http_body_timeout_s": 0.5, "http_header_timeout_s": 0.5}


def refused(reason: str) -> float:
    return REGISTRY.get_sample_value("hanmadi_requests_refused_total", {"reason": reason}) or 0.0


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    port = free_port()
    settings = secure_settings(tmp_path, port, max_pending_sockets_per_ip=3, **SHORT)
    with serve_in_thread(settings, port=port) as url:
        yield url, settings


def ws_url(url: str) -> str:
    return url.replace("http://", "ws://") + "/twilio/media"


async def closed(ws: ClientConnection) -> tuple[int, str]:
    """Read until the server closes; its close code and reason (1006 when the TCP connection just ended)."""
    try:
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    except ConnectionClosed as exc:
        return (exc.rcvd.code, exc.rcvd.reason) if exc.rcvd else (1006, "")


async def signed_webhook(url: str, call_sid: str) -> httpx.Response:
    params = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": "+821055501234", "To": "+82215887788"}
    signature = tw.compute_signature(AUTH_TOKEN, f"{url}/twilio/voice", params)
    async with httpx.AsyncClient() as client:
        return await client.post(f"{url}/twilio/voice", data=params, headers={"X-Twilio-Signature": signature})


def token_of(response: httpx.Response) -> str:
    stream = ET.fromstring(response.text).find("./Connect/Stream")
    assert stream is not None, response.text
    return next(p.get("value", "") for p in stream.findall("Parameter") if p.get("name") == "token")


async def send_start(ws: ClientConnection, call_sid: str, token: str) -> None:
    stream_sid = "MZ" + uuid.uuid4().hex
    start = {
        "accountSid": "AC" + "0" * 32,
        "streamSid": stream_sid,
        "callSid": call_sid,
        "customParameters": {"token": token},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    await ws.send(json.dumps({"event": "start", "streamSid": stream_sid, "start": start}))


# --- 1. limits before work ----------------------------------------------------------------------------------------


async def test_a_frame_over_max_message_bytes_closes_the_socket_before_it_is_buffered(
    server: tuple[str, Settings],
) -> None:
    url, settings = server
    ws = await connect(ws_url(url), max_size=None)
    await ws.send("x" * (settings.max_message_bytes + 1))  # no start, no token: refused by the WebSocket parser
    code, _ = await closed(ws)
    assert code in (1009, 1006)  # 1009 "message too big" — unless the reset beat the close frame to the client
    async with httpx.AsyncClient() as client:
        assert (await client.get(f"{url}/healthz")).json()["ok"] is True


async def test_a_socket_without_a_valid_start_is_closed_at_the_start_deadline(server: tuple[str, Settings]) -> None:
    url, _ = server
    before = refused("start_timeout")
    idle = await connect(ws_url(url))
    chatty = await connect(ws_url(url))  # sends messages, never a start
    await chatty.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    await chatty.send("{}")
    assert await closed(idle) == (1008, "no start in time")
    assert await closed(chatty) == (1008, "no start in time")
    assert refused("start_timeout") - before == 2


async def test_sockets_without_a_start_are_capped_per_address_and_a_started_one_frees_its_place(
    server: tuple[str, Settings],
) -> None:
    url, settings = server
    before = refused("per_ip_cap")
    call_sid = "CA" + uuid.uuid4().hex
    token = token_of(await signed_webhook(url, call_sid))
    holding = [await connect(ws_url(url)) for _ in range(settings.max_pending_sockets_per_ip)]
    with pytest.raises(InvalidStatus) as refusal:
        await connect(ws_url(url))
    assert refusal.value.response.status_code == 403
    assert refused("per_ip_cap") - before == 1
    await send_start(holding[0], call_sid, token)  # a valid start: this socket is no longer "pending"
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        while True:  # the start is handled on the server's loop: knock until the place is free
            try:
                extra = await connect(ws_url(url))
                break
            except InvalidStatus:
                await asyncio.sleep(0.02)
    for ws in [*holding, extra]:
        await ws.close()


async def test_request_bodies_are_bounded_in_size_and_time_and_a_vanished_client_is_one_info_line(
    server: tuple[str, Settings],
) -> None:
    url, settings = server
    host, port = url.removeprefix("http://").split(":")
    async with httpx.AsyncClient() as client:
        big = await client.post(f"{url}/twilio/voice", content=b"x" * (settings.max_body_bytes + 1))
    assert big.status_code == 413

    before = refused("body_timeout")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nCallSid=CA")
    await writer.drain()
    status = await reader.readline()  # the rest of the body never comes
    assert status.startswith(b"HTTP/1.1 408")
    writer.close()
    assert refused("body_timeout") - before == 1

    gone_before = refused("client_gone")
    with all_logs() as logs:
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b"POST /twilio/voice HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nCallSid=CA")
        await writer.drain()
        writer.close()  # the client goes away mid-body
        async with asyncio.timeout(5):
            while refused("client_gone") == gone_before:  # noqa: ASYNC110 (the server counts it on its loop)
                await asyncio.sleep(0.01)
    gone = {line for line in logs.lines if "went away mid-request" in line}  # (captured on two loggers)
    assert len(gone) == 1 and next(iter(gone)).startswith("INFO ")
    assert refused("client_gone") - gone_before == 1
    assert not [line for line in logs.lines if "Traceback" in line or "ClientDisconnect" in line]


async def test_request_headers_must_arrive_before_the_header_deadline(server: tuple[str, Settings]) -> None:
    url, _ = server
    host, port = url.removeprefix("http://").split(":")
    before = refused("header_timeout")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")  # and then nothing, like a slow loris
    await writer.drain()
    async with asyncio.timeout(10):
        assert await reader.read() == b""  # the server hung up
    writer.close()
    assert refused("header_timeout") - before == 1


async def test_an_unsigned_multipart_webhook_is_refused_unparsed(server: tuple[str, Settings]) -> None:
    url, _ = server
    files = {"upload": ("big.bin", b"\0" * 60_000, "application/octet-stream")}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{url}/twilio/voice", data={"CallSid": "CA1"}, files=files)
    assert response.status_code == 415  # never handed to a multipart parser, so nothing spooled to disk


# --- 3. one CallSid, one call ---------------------------------------------------------------------------------------


async def test_a_replayed_webhook_after_hang_up_opens_nothing_and_the_transcript_is_unchanged(
    server: tuple[str, Settings],
) -> None:
    url, settings = server
    call_sid = "CA" + uuid.uuid4().hex
    early = token_of(await signed_webhook(url, call_sid))  # captured before the real call starts
    result = await place_call(
        CallerConfig(url=url, utterances=[voice(1.0)], auth_token=AUTH_TOKEN, turns=1, call_sid=call_sid)
    )
    assert result.turns and result.turns[0].first_audio_ms is not None
    await settle(url)
    stored = await read_call(settings.database_url, call_sid)
    assert stored is not None
    before = REGISTRY.get_sample_value("hanmadi_calls_rejected_total", {"reason": "callsid_seen"}) or 0.0

    replay = await signed_webhook(url, call_sid)  # a captured signed webhook, replayed after the hang-up
    assert replay.status_code == 200
    root = ET.fromstring(replay.text)
    assert root.find("./Connect") is None and root.find("./Hangup") is not None

    ws = await connect(ws_url(url))  # the token minted before the call: still valid, still refused
    await send_start(ws, call_sid, early)
    assert await closed(ws) == (1008, "call already handled")
    after = REGISTRY.get_sample_value("hanmadi_calls_rejected_total", {"reason": "callsid_seen"}) or 0.0
    assert after - before == 2
    await settle(url)
    assert await read_call(settings.database_url, call_sid) == stored


async def test_a_callsid_that_streamed_on_one_process_gets_no_stream_on_another(tmp_path: Path) -> None:
    """Two servers sharing one database, as N processes do: the second learns of the call from the database."""
    port_a, port_b = free_port(), free_port()
    shared = {"database_url": f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"}
    settings_a = secure_settings(tmp_path / "a", port_a, **shared)
    settings_b = secure_settings(tmp_path / "b", port_b, **shared)
    with serve_in_thread(settings_a, port=port_a) as url_a, serve_in_thread(settings_b, port=port_b) as url_b:
        result = await place_call(CallerConfig(url=url_a, utterances=[voice(0.8)], auth_token=AUTH_TOKEN, turns=1))
        await settle(url_a)
        replay = await signed_webhook(url_b, result.call_sid)
    assert ET.fromstring(replay.text).find("./Hangup") is not None


# --- 4. logs cannot be forged -------------------------------------------------------------------------------------


async def test_a_newline_in_a_callsid_or_an_event_never_starts_a_new_log_line(server: tuple[str, Settings]) -> None:
    url, _ = server
    forged = "CA1\n2026-01-01 00:00:00 CRITICAL hanmadi.server: FORGED"
    with all_logs() as logs:
        records: list[logging.LogRecord] = []
        grab = logging.Handler()
        grab.emit = records.append  # type: ignore[method-assign]
        logging.getLogger().addHandler(grab)
        try:
            async with httpx.AsyncClient() as client:  # unsigned: refused, and logged
                await client.post(f"{url}/twilio/voice", data={"CallSid": forged})
            ws = await connect(ws_url(url))
            await ws.send('{"event": "x\\nCRITICAL hanmadi.server: FORGED"}')  # an unknown event before any start
            await ws.send(json.dumps({"event": "start", "streamSid": "MZ\nFORGED", "start": {"callSid": forged}}))
            await closed(ws)
        finally:
            logging.getLogger().removeHandler(grab)
    assert any("FORGED" in line for line in logs.lines), "the forged values were not logged at all"
    text, as_json = OneLineFormatter("%(levelname)s %(name)s: %(message)s"), JsonFormatter()
    for record in records:
        line = text.format(record)
        assert "\n" not in line and "\r" not in line, line
        assert len(json.dumps(json.loads(as_json.format(record))).splitlines()) == 1
        assert len(as_json.format(record).splitlines()) == 1
    # the values from outside are escaped at the call site too, so even a plain formatter keeps them on one line
    assert not [line for line in logs.lines if line.splitlines()[0] != line]


def test_safe_makes_control_characters_visible_and_caps_length() -> None:
    assert safe("CA1\nFORGED\r\x1b[31m\u2028") == "CA1\\nFORGED\\r\\x1b[31m\\u2028"
    assert safe("a\\nb") == "a\\\\nb"  # a literal backslash-n cannot pass for an escaped newline
    capped = safe("x" * 1000, 50)
    assert capped.startswith("x" * 50) and capped.endswith("…(+950 chars)")


# --- 5. the small ones --------------------------------------------------------------------------------------------


async def test_a_huge_offset_is_a_4xx_not_a_500(server: tuple[str, Settings]) -> None:
    url, _ = server
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}) as client:
        response = await client.get("/api/calls", params={"offset": 10**30})
    assert response.status_code == 422


async def test_the_schema_needs_the_admin_token_and_the_docs_are_off_in_production(
    server: tuple[str, Settings], tmp_path: Path
) -> None:
    url, _ = server
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/docs")).status_code == 404
        assert (await client.get("/redoc")).status_code == 404
        assert (await client.get("/openapi.json")).status_code == 401
        schema = await client.get("/openapi.json", headers={"Authorization": f"bearer {ADMIN_TOKEN}"})
        assert schema.status_code == 200 and "/api/calls" in schema.json()["paths"]
    port = free_port()
    dev = secure_settings(tmp_path, port, dev=True, twilio_auth_token=None, admin_token=None)
    with serve_in_thread(dev, port=port) as dev_url:  # --dev (loopback only): the docs are there
        async with httpx.AsyncClient(base_url=dev_url) as client:
            assert (await client.get("/docs")).status_code == 200
            assert (await client.get("/openapi.json")).status_code == 200


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER", "bEaReR"])
async def test_bearer_is_accepted_in_any_case_everywhere(server: tuple[str, Settings], scheme: str) -> None:
    url, _ = server
    auth = {"Authorization": f"{scheme} {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=url, headers=auth) as client:
        assert (await client.get("/api/calls")).status_code == 200
        assert (await client.post("/web/softphone/session")).status_code == 200
        assert (await client.get("/openapi.json")).status_code == 200


def test_an_admin_token_shorter_than_24_characters_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="at least 24 characters"):
        secure_settings(tmp_path, 8080, admin_token="short-admin-token")
    assert secure_settings(tmp_path, 8080, admin_token="x" * 24).admin_token is not None


# --- 2. records survive the database being away (at the server: /healthz) ----------------------------------------


async def test_healthz_reports_a_degraded_store_and_a_call_started_meanwhile_is_kept(tmp_path: Path) -> None:
    from hanmadi.store.writer import Recorder

    port = free_port()
    data = tmp_path / "data"
    settings = secure_settings(tmp_path, port, database_url=f"sqlite+aiosqlite:///{data / 'calls.db'}")
    recorder = Recorder(settings.database_url, journal_dir=tmp_path / "journal", retry_max_s=0.2)
    with serve_in_thread(settings, port=port, recorder=recorder) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/healthz")).json()["store"] == "ok"
            first = await place_call(CallerConfig(url=url, utterances=[voice(0.8)], auth_token=AUTH_TOKEN, turns=1))
            await settle(url)
            (tmp_path / "data").rename(tmp_path / "away")  # the database's directory disappears
            second = await place_call(CallerConfig(url=url, utterances=[voice(0.8)], auth_token=AUTH_TOKEN, turns=1))
            health = (await client.get("/healthz")).json()
            assert health["store"] == "degraded" and health["store_pending"] > 0
            (tmp_path / "away").rename(tmp_path / "data")  # and comes back
            await settle(url)
            assert (await client.get("/healthz")).json()["store"] == "ok"
    for result in (first, second):
        stored = await read_call(settings.database_url, result.call_sid)
        assert stored is not None and stored.call.status == "completed"
        assert [t.index for t in stored.turns] == [0, 1]  # the greeting and the caller's turn


@pytest.mark.parametrize("call_sid", ["CA1\nCRITICAL FORGED", "C" * 65, "CA 1", "CA1\x1b[31m"])
async def test_a_malformed_callsid_is_refused_even_when_signed(server: tuple[str, Settings], call_sid: str) -> None:
    url, _ = server
    response = await signed_webhook(url, call_sid)
    assert response.status_code == 400


# --- flow control of the media socket ----------------------------------------------------------------------------


class _Transport:
    """What the WebSocket protocol asks of its transport here: pause and resume reading."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_reading(self) -> None:
        self.calls.append("pause")

    def resume_reading(self) -> None:
        self.calls.append("resume")

    def is_closing(self) -> bool:
        return False


async def test_the_media_socket_pauses_reading_only_past_its_high_watermark_and_resumes_at_the_low_one(
    tmp_path: Path,
) -> None:
    from uvicorn.server import ServerState

    from hanmadi.limits import WatermarkWebSocketProtocol, uvicorn_config
    from hanmadi.server import create_app

    settings = secure_settings(tmp_path, free_port())
    config = uvicorn_config(create_app(settings, use_recorder=False), settings, host="127.0.0.1", port=0)
    config.load()
    assert config.ws_protocol_class is WatermarkWebSocketProtocol  # every server of hanmadi reads this way
    protocol = WatermarkWebSocketProtocol(config=config, server_state=ServerState(), app_state={})
    transport = _Transport()
    protocol.transport = transport  # type: ignore[assignment]
    high, low = WatermarkWebSocketProtocol.high, WatermarkWebSocketProtocol.low

    def arrive(n: int) -> None:
        for i in range(n):
            protocol.curr_msg_data_type = "text"
            protocol.frames = [f"frame {i}".encode()]
            protocol.send_receive_event_to_app()

    arrive(high - 1)  # a call reading behind by less than the high watermark: the socket is never paused
    assert transport.calls == []
    for i in range(high - 1):
        assert (await protocol.receive())["text"] == f"frame {i}"
    assert transport.calls == []

    arrive(high)  # a peer outrunning the call: paused once, at the high watermark
    assert transport.calls == ["pause"]
    received = [await protocol.receive() for _ in range(high - low)]  # resumed once, at the low watermark
    assert transport.calls == ["pause", "resume"]
    assert [m["text"] for m in received] == [f"frame {i}" for i in range(high - low)]  # in order, none lost
    assert protocol.queue.qsize() == low
