"""Security: signed webhooks, one-time stream tokens, the admin API, bad-frame policy, and what logs may contain."""

from __future__ import annotations

import asyncio
import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from security_support import ADMIN_TOKEN, AUTH_TOKEN, SECRETS, all_logs, free_port, secure_settings, voice
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hanmadi.config import Settings
from hanmadi.loopback import serve_in_thread
from hanmadi.store.records import mask_number
from hanmadi.telephony import twilio as tw
from hanmadi.telephony.caller import CallerConfig, place_call

pytestmark = pytest.mark.e2e

FROM, TO = "+821055501234", "+82215887788"


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Settings]]:
    port = free_port()
    settings = secure_settings(tmp_path, port)
    with serve_in_thread(settings, port=port) as url:
        yield url, settings


def webhook_params(call_sid: str) -> dict[str, str]:
    return {"CallSid": call_sid, "AccountSid": "AC" + "0" * 32, "From": FROM, "To": TO}


async def post_webhook(url: str, params: dict[str, str], signature: str | None) -> httpx.Response:
    headers = {"X-Twilio-Signature": signature} if signature is not None else {}
    async with httpx.AsyncClient() as client:
        return await client.post(f"{url}/twilio/voice", data=params, headers=headers)


def stream_of(response: httpx.Response) -> tuple[str, str]:
    stream = ET.fromstring(response.text).find("./Connect/Stream")
    assert stream is not None
    token = next(p.get("value", "") for p in stream.findall("Parameter") if p.get("name") == "token")
    return stream.get("url", ""), token


async def open_stream(ws_url: str, call_sid: str, token: str) -> ClientConnection:
    ws = await connect(ws_url, additional_headers={"X-Twilio-Signature": tw.compute_signature(AUTH_TOKEN, ws_url, {})})
    start = {
        "accountSid": "AC" + "0" * 32,
        "streamSid": "MZ" + uuid.uuid4().hex,
        "callSid": call_sid,
        "customParameters": {"token": token},
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    await ws.send(json.dumps({"event": "start", "streamSid": start["streamSid"], "start": start}))
    return ws


async def closed_with(ws: ClientConnection) -> tuple[int, str]:
    """Read until the server closes; the close code and reason (or 0 when still open after 10 s)."""
    try:
        async with asyncio.timeout(10):
            while True:
                await ws.recv()
    except ConnectionClosed as closed:
        assert closed.rcvd is not None
        return closed.rcvd.code, closed.rcvd.reason
    except TimeoutError:
        await ws.close()
        return 0, "open"


async def test_unsigned_tampered_or_foreign_signed_webhook_is_403(server: tuple[str, Settings]) -> None:
    url, _ = server
    params = webhook_params("CA" + uuid.uuid4().hex)
    good = tw.compute_signature(AUTH_TOKEN, f"{url}/twilio/voice", params)
    assert (await post_webhook(url, params, None)).status_code == 403
    assert (await post_webhook(url, params, "")).status_code == 403
    assert (await post_webhook(url, {**params, "From": "+821099999999"}, good)).status_code == 403
    other_account = tw.compute_signature("another-account-token", f"{url}/twilio/voice", params)
    assert (await post_webhook(url, params, other_account)).status_code == 403
    assert (await post_webhook(url, params, good)).status_code == 200


async def test_replayed_webhook_gets_a_fresh_token_but_a_replayed_stream_is_refused(
    server: tuple[str, Settings],
) -> None:
    """Twilio signatures carry no nonce, so a captured webhook can be replayed: it only yields TwiML with a new
    token for the same CallSid. What must not replay is the media stream: each token opens one stream, once."""
    url, _ = server
    call_sid = "CA" + uuid.uuid4().hex
    params = webhook_params(call_sid)
    signature = tw.compute_signature(AUTH_TOKEN, f"{url}/twilio/voice", params)
    first, replay = await post_webhook(url, params, signature), await post_webhook(url, params, signature)
    assert first.status_code == replay.status_code == 200
    ws_url, token = stream_of(first)
    assert stream_of(replay)[1] != token
    ws = await open_stream(ws_url, call_sid, token)
    again = await open_stream(ws_url, call_sid, token)  # the same start message, replayed
    assert await closed_with(again) == (1008, "stream token reused")
    await ws.close()


@pytest.mark.parametrize("problem", ["another_call", "forged", "expired_format", "missing"])
async def test_stream_token_for_another_call_or_forged_is_refused(server: tuple[str, Settings], problem: str) -> None:
    url, _ = server
    call_sid = "CA" + uuid.uuid4().hex
    params = webhook_params(call_sid)
    ws_url, token = stream_of(
        await post_webhook(url, params, tw.compute_signature(AUTH_TOKEN, f"{url}/twilio/voice", params))
    )
    presented_sid, presented = {
        "another_call": ("CA" + uuid.uuid4().hex, token),
        "forged": (call_sid, tw.StreamTokens("not-our-auth-token", 60).issue(call_sid)),
        "expired_format": (call_sid, token[:-3] + "xyz"),
        "missing": (call_sid, ""),
    }[problem]
    ws = await open_stream(ws_url, presented_sid, presented)
    code, reason = await closed_with(ws)
    assert code == 1008 and reason.startswith("stream token ")


def test_tokens_validate_in_any_process_with_the_auth_token_but_reuse_is_remembered_per_process() -> None:
    """What DEPLOYMENT.md says about several processes: the MAC is keyed by the auth token, the used set is local."""
    webhook_process, media_process = tw.StreamTokens(AUTH_TOKEN, 60), tw.StreamTokens(AUTH_TOKEN, 60)
    token = webhook_process.issue("CA1")
    media_process.redeem(token, "CA1")  # any process sharing the auth token accepts it
    with pytest.raises(tw.TokenError, match="reused"):
        media_process.redeem(token, "CA1")
    webhook_process.redeem(token, "CA1")  # another process does not know it was used: route a call to one process
    with pytest.raises(tw.TokenError, match="bad_signature"):
        tw.StreamTokens("another-auth-token", 60).redeem(webhook_process.issue("CA2"), "CA2")
    clock = [1000.0]
    short = tw.StreamTokens(AUTH_TOKEN, 5, clock=lambda: clock[0])
    old = short.issue("CA3")
    clock[0] += 6
    with pytest.raises(tw.TokenError, match="expired"):
        short.redeem(old, "CA3")


async def test_admin_api_needs_the_bearer_token(server: tuple[str, Settings]) -> None:
    url, _ = server
    async with httpx.AsyncClient(base_url=url) as client:
        assert (await client.get("/api/calls")).status_code == 401
        wrong = {"Authorization": "Bearer " + ADMIN_TOKEN[:-1]}
        assert (await client.get("/api/calls", headers=wrong)).status_code == 401
        assert (await client.delete("/api/calls/CA1", headers=wrong)).status_code == 401
        ok = await client.get("/api/calls", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
        assert ok.status_code == 200


async def test_api_is_off_not_open_without_an_admin_token(tmp_path: Path) -> None:
    port = free_port()
    with serve_in_thread(secure_settings(tmp_path, port, admin_token=None), port=port) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            assert (await client.get("/api/calls")).status_code == 404
            forged = {"Authorization": "Bearer anything"}
            assert (await client.get("/api/calls", headers=forged)).status_code == 404


@pytest.mark.parametrize("flood", ["binary", "garbage"])  # oversized: closed at once (test_limits.py)
async def test_oversized_and_flooding_frames_are_closed_by_policy(server: tuple[str, Settings], flood: str) -> None:
    url, settings = server
    call_sid = "CA" + uuid.uuid4().hex
    params = webhook_params(call_sid)
    ws_url, token = stream_of(
        await post_webhook(url, params, tw.compute_signature(AUTH_TOKEN, f"{url}/twilio/voice", params))
    )
    ws = await open_stream(ws_url, call_sid, token)
    frame: str | bytes = {
        "binary": b"\x00" * 1000,
        "garbage": "{",
    }[flood]
    for _ in range(settings.max_bad_frames):
        await ws.send(frame)
    assert await closed_with(ws) == (1008, "too many bad frames")


async def test_no_secret_and_no_full_phone_number_in_any_log_line(tmp_path: Path) -> None:
    port = free_port()
    settings = secure_settings(tmp_path, port)
    with all_logs() as logs:
        with serve_in_thread(settings, port=port) as url:
            result = await place_call(
                CallerConfig(
                    url=url, utterances=[voice(1.0)], auth_token=AUTH_TOKEN, turns=1, from_number=FROM, to_number=TO
                )
            )
            params = webhook_params("CA" + uuid.uuid4().hex)
            await post_webhook(url, params, "forged")  # a refused webhook logs too
            async with httpx.AsyncClient(base_url=url) as client:
                await client.get("/api/calls", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
                await client.get("/api/calls", headers={"Authorization": "Bearer wrong-token"})
    assert result.turns and result.turns[0].first_audio_ms is not None
    text = "\n".join(logs.lines)
    assert result.call_sid in text, "the capture missed the call's log lines"
    for name, secret in SECRETS.items():
        assert secret not in text, f"{name} appears in the logs"
    for number in (FROM, TO):
        for form in (number, number.lstrip("+"), "0" + number[3:]):
            assert form not in text, f"a full phone number appears in the logs: {form}"
    assert mask_number(FROM) != FROM
