"""Bad input on the Media Streams socket: one log line and a counter per reason, closed by policy, others unharmed."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import uuid
import xml.etree.ElementTree as ET

import httpx
import pytest
from e2e_support import sign, voice
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hanmadi import metrics
from hanmadi.telephony.audio import pcm_bytes_to_ulaw

pytestmark = pytest.mark.e2e


async def stream_token(url: str, call_sid: str) -> tuple[str, str]:
    params = {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": "+821011112222", "To": "+8225550100"}
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{url}/twilio/voice", data=params, headers={"X-Twilio-Signature": sign(f"{url}/twilio/voice", params)}
        )
    stream = ET.fromstring(r.text).find("./Connect/Stream")
    assert stream is not None
    token = next(p.get("value", "") for p in stream.findall("Parameter") if p.get("name") == "token")
    return stream.get("url", ""), token


def start_message(stream_sid: str, call_sid: str, token: str) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": "1",
            "streamSid": stream_sid,
            "start": {
                "accountSid": "AC" + "0" * 32,
                "streamSid": stream_sid,
                "callSid": call_sid,
                "tracks": ["inbound"],
                "customParameters": {"token": token},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
        }
    )


def media(stream_sid: str, payload: str, chunk: int = 1) -> str:
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": str(chunk + 1),
            "streamSid": stream_sid,
            "media": {"track": "inbound", "chunk": str(chunk), "timestamp": str(chunk * 20), "payload": payload},
        }
    )


async def open_call(url: str) -> tuple[ClientConnection, str, str]:
    call_sid = "CA" + uuid.uuid4().hex
    ws_url, token = await stream_token(url, call_sid)
    ws = await connect(ws_url, max_size=None)
    stream_sid = "MZ" + uuid.uuid4().hex
    await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
    await ws.send(start_message(stream_sid, call_sid, token))
    return ws, stream_sid, call_sid


def bad_count(reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value("hanmadi_bad_frames_total", {"reason": reason})
    return value or 0.0


SILENCE = base64.b64encode(b"\xff" * 160).decode()


BAD_MESSAGES = {
    "invalid_json": lambda sid: "{not json",
    "binary_frame": lambda sid: b"\x00\x01\x02",
    "unknown_event": lambda sid: json.dumps({"event": "teleport", "streamSid": sid}),
    "wrong_stream_sid": lambda sid: media("MZ" + "f" * 32, SILENCE),
    "invalid_base64": lambda sid: media(sid, "***not base64***"),
    # a frame over max_message_bytes is no bad frame any more: the WebSocket parser refuses it before buffering and
    # closes the socket 1009 (tests/security/test_limits.py)
    "duplicate_start": lambda sid: start_message(sid, "CA" + "e" * 32, "x"),
}


@pytest.mark.parametrize("reason", sorted(BAD_MESSAGES))
async def test_each_bad_frame_is_logged_and_counted_and_the_call_goes_on(
    server: tuple[str, object], reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    url, _ = server
    ws, stream_sid, _ = await open_call(url)
    before = bad_count(reason)
    with caplog.at_level(logging.WARNING, logger="hanmadi.server"):
        await ws.send(BAD_MESSAGES[reason](stream_sid))
        # the call is still alive: good media is accepted, the greeting keeps coming
        await ws.send(media(stream_sid, SILENCE, chunk=2))
        got_audio = False
        async with asyncio.timeout(10):
            while not got_audio:
                msg = json.loads(await ws.recv())
                got_audio = msg.get("event") == "media"
        for _ in range(50):
            if bad_count(reason) > before:
                break
            await asyncio.sleep(0.02)
    await ws.close()
    assert bad_count(reason) == before + 1
    assert any(reason in r.getMessage() for r in caplog.records)


async def test_media_before_start_is_a_bad_frame(server: tuple[str, object]) -> None:
    url, _ = server
    ws = await connect(url.replace("http", "ws") + "/twilio/media")
    before = bad_count("media_before_start")
    await ws.send(media("MZ" + "1" * 32, SILENCE))
    for _ in range(50):
        if bad_count("media_before_start") > before:
            break
        await asyncio.sleep(0.02)
    await ws.close()
    assert bad_count("media_before_start") == before + 1


async def test_too_many_bad_frames_close_the_socket_by_policy_and_other_calls_do_not_notice(
    server: tuple[str, object],
) -> None:
    url, settings = server
    healthy, healthy_sid, _ = await open_call(url)
    flood, _, _ = await open_call(url)
    for _ in range(settings.max_bad_frames):  # type: ignore[attr-defined]
        await flood.send("{garbage")
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                await flood.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "bad frames" in closed.value.rcvd.reason
    # the healthy call still gets its audio
    await healthy.send(media(healthy_sid, SILENCE))
    async with asyncio.timeout(10):
        while json.loads(await healthy.recv()).get("event") != "media":
            pass
    await healthy.close()


@pytest.mark.parametrize("problem", ["missing", "reused", "wrong_call", "malformed"])
async def test_stream_token_problems_close_with_a_reason(server: tuple[str, object], problem: str) -> None:
    url, _ = server
    call_sid = "CA" + uuid.uuid4().hex
    ws_url, token = await stream_token(url, call_sid)
    if problem == "reused":
        first = await connect(ws_url)
        await first.send(start_message("MZ" + uuid.uuid4().hex, call_sid, token))
        await first.recv()
        await first.close()
        await asyncio.sleep(0.2)
    presented = {"missing": "", "reused": token, "wrong_call": token, "malformed": "abc"}[problem]
    sid = "CA" + uuid.uuid4().hex if problem == "wrong_call" else call_sid
    ws = await connect(ws_url)
    await ws.send(start_message("MZ" + uuid.uuid4().hex, sid, presented))
    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    assert "token" in closed.value.rcvd.reason


async def test_client_vanishing_mid_reply_cancels_the_call(server: tuple[str, object]) -> None:
    url, _ = server
    ws, stream_sid, _ = await open_call(url)
    speech = pcm_bytes_to_ulaw(voice(1.0) + bytes(12000))
    for i in range(0, len(speech) - 159, 160):
        await ws.send(media(stream_sid, base64.b64encode(speech[i : i + 160]).decode(), chunk=i // 160 + 1))
    await ws.recv()
    ws.transport.abort()  # no close handshake: the client just vanishes
    async with httpx.AsyncClient() as client:
        for _ in range(100):
            if (await client.get(f"{url}/healthz")).json()["active_calls"] == 0:
                break
            await asyncio.sleep(0.05)
        assert (await client.get(f"{url}/healthz")).json()["active_calls"] == 0


async def test_hang_up_mid_answer_still_records_the_turn_in_progress(server: tuple[str, object]) -> None:
    from test_calls import stored_call

    url, settings = server
    ws, stream_sid, call_sid = await open_call(url)
    async with asyncio.timeout(10):  # the greeting plays first
        while json.loads(await ws.recv()).get("event") != "mark":
            pass
    speech = pcm_bytes_to_ulaw(voice(1.0) + bytes(12000))
    for i in range(0, len(speech) - 159, 160):
        await ws.send(media(stream_sid, base64.b64encode(speech[i : i + 160]).decode(), chunk=i // 160 + 1))
    async with asyncio.timeout(10):  # the reply to turn 1 starts...
        while True:
            msg = json.loads(await ws.recv())
            if msg.get("event") == "mark" and msg["mark"]["name"].startswith("t1"):
                break
    # ...and the caller hangs up before it is over: Twilio sends stop and closes
    await ws.send(json.dumps({"event": "stop", "sequenceNumber": "999", "streamSid": stream_sid, "stop": {}}))
    await ws.close()
    for _ in range(100):
        async with httpx.AsyncClient() as client:
            if (await client.get(f"{url}/healthz")).json()["active_calls"] == 0:
                break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.3)
    call = await stored_call(settings.database_url, call_sid)  # type: ignore[attr-defined]
    assert call.call.end_reason == "caller_stop"
    assert [t.index for t in call.turns] == [0, 1]
    assert call.turns[1].generated_text  # the turn in progress is kept with what was generated
