"""Whole calls over real sockets: webhook -> TwiML -> Media Streams -> reply audio, marks, barge-in, DTMF, busy."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

import httpx
import numpy as np
import pytest
from e2e_support import AUTH_TOKEN, E2E_ADMIN_TOKEN, e2e_settings, free_port, sign, voice

from hanmadi.loopback import settle
from hanmadi.store.records import CallDetail
from hanmadi.telephony.caller import CallerConfig, place_call
from loopback_support import read_call

pytestmark = pytest.mark.e2e


async def stored_call(database_url: str, call_sid: str) -> CallDetail:
    """The call as the store has it (read with a fresh engine, as another process would)."""
    detail = await read_call(database_url, call_sid)
    assert detail is not None, f"call {call_sid} not recorded"
    return detail


WEBHOOK_PARAMS = {
    "CallSid": "CA" + "1" * 32,
    "AccountSid": "AC" + "2" * 32,
    "From": "+821012345678",
    "To": "+8225550100",
}


async def test_webhook_signed_by_twilio_answers_connect_stream(server: tuple[str, object]) -> None:
    url, _ = server
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{url}/twilio/voice",
            data=WEBHOOK_PARAMS,
            headers={"X-Twilio-Signature": sign(f"{url}/twilio/voice", WEBHOOK_PARAMS)},
        )
    assert r.status_code == 200
    root = ET.fromstring(r.text)
    stream = root.find("./Connect/Stream")
    assert stream is not None
    assert stream.get("url") == url.replace("http://", "ws://") + "/twilio/media"
    assert "?" not in stream.get("url", "")
    names = {p.get("name") for p in stream.findall("Parameter")}
    assert "token" in names


@pytest.mark.parametrize("signature", [None, "bm90IGEgc2lnbmF0dXJl"])
async def test_webhook_without_valid_signature_is_403(server: tuple[str, object], signature: str | None) -> None:
    url, _ = server
    headers = {"X-Twilio-Signature": signature} if signature else {}
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{url}/twilio/voice", data=WEBHOOK_PARAMS, headers=headers)
    assert r.status_code == 403


async def test_webhook_param_tampered_is_403(server: tuple[str, object]) -> None:
    url, _ = server
    sig = sign(f"{url}/twilio/voice", WEBHOOK_PARAMS)
    tampered = {**WEBHOOK_PARAMS, "From": "+821099999999"}
    async with httpx.AsyncClient() as client:
        r = await client.post(f"{url}/twilio/voice", data=tampered, headers={"X-Twilio-Signature": sig})
    assert r.status_code == 403


async def test_behind_tls_proxy_signature_over_public_https_url_is_accepted(tmp_path: Path) -> None:
    """The proxy turns https into http: we validate over HANMADI_PUBLIC_URL, never over request.url."""
    from hanmadi.server import create_app

    settings = e2e_settings(tmp_path, 8080, public_url="https://bot.example.com")
    app = create_app(settings, use_recorder=False)
    sig = sign("https://bot.example.com/twilio/voice", WEBHOOK_PARAMS)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://internal:8080") as client:
        ok = await client.post("/twilio/voice", data=WEBHOOK_PARAMS, headers={"X-Twilio-Signature": sig})
        http_sig = sign("http://internal:8080/twilio/voice", WEBHOOK_PARAMS)
        wrong = await client.post("/twilio/voice", data=WEBHOOK_PARAMS, headers={"X-Twilio-Signature": http_sig})
    assert ok.status_code == 200
    assert "wss://bot.example.com/twilio/media" in ok.text
    assert wrong.status_code == 403


async def test_our_caller_completes_a_call_and_it_is_recorded(server: tuple[str, object]) -> None:
    url, settings = server
    result = await place_call(
        CallerConfig(url=url, utterances=[voice(1.0), voice(0.8)], params={}, auth_token=AUTH_TOKEN, turns=2)
    )
    data = result.to_json()
    assert len(data["turns"]) == 2
    for turn in data["turns"]:
        assert turn["first_audio_ms"] is not None and turn["first_audio_ms"] > 0
        assert turn["reply_audio_s"] > 0.2
    assert data["marks_echoed"] >= 2
    await settle(url)  # the call is over on the server and the recorder has written it
    call = await stored_call(settings.database_url, result.call_sid)
    assert len(call.turns) == 3  # greeting + two caller turns
    assert call.call.status == "completed"
    assert call.call.from_masked != "+821012345678"  # numbers are masked at rest


async def test_streamdouble_completes_a_call(server: tuple[str, object]) -> None:
    """A third-party Twilio Media Streams double speaks to us at protocol fidelity."""
    from streamdouble.protocol import StreamIdentity
    from streamdouble.session import Session, SessionConfig

    url, _ = server
    call_sid = "CA" + "7" * 32
    params = {**WEBHOOK_PARAMS, "CallSid": call_sid}
    async with httpx.AsyncClient() as client:
        r = await client.post(
            f"{url}/twilio/voice", data=params, headers={"X-Twilio-Signature": sign(f"{url}/twilio/voice", params)}
        )
    stream = ET.fromstring(r.text).find("./Connect/Stream")
    assert stream is not None
    custom = {p.get("name", ""): p.get("value", "") for p in stream.findall("Parameter")}
    ulaw = __import__("hanmadi.telephony.audio", fromlist=["x"]).pcm_bytes_to_ulaw(voice(1.0) + bytes(16000))
    frames = [ulaw[i : i + 160] for i in range(0, len(ulaw) - 159, 160)]
    session = Session(
        stream.get("url", ""),
        frames,
        config=SessionConfig(custom_parameters=custom, response_timeout_s=10, quiet_period_s=1.5),
        identity=StreamIdentity(call_sid=call_sid),
    )
    result = await session.run()
    assert result.audio_received, "the agent never spoke to streamdouble"
    assert result.violation_count == 0, result.violations
    assert result.marks_echoed, "the agent sent no mark for streamdouble to echo"


async def test_barge_in_sends_clear_and_keeps_only_what_was_heard(tmp_path: Path) -> None:
    from hanmadi.loopback import serve_in_thread
    from hanmadi.providers.simulated import ScriptedLLM, SimulatedSTT, SimulatedTTS
    from hanmadi.server import Providers

    port = free_port()
    long_reply = "네, 안내해 드리겠습니다. " + "오늘 안내해 드릴 내용이 아주 많습니다. " * 5
    providers = Providers(
        stt=SimulatedSTT(["예약 안내해 주세요", "잠깐만요 그만하세요"]),
        llm=ScriptedLLM(script=[(0.1, long_reply)]),
        tts=SimulatedTTS(),
    )
    settings = e2e_settings(tmp_path, port)
    with serve_in_thread(settings, port=port, providers=providers) as url:
        result = await place_call(
            CallerConfig(
                url=url,
                utterances=[voice(1.0), voice(1.5)],
                params={},
                auth_token=AUTH_TOKEN,
                turns=2,
                barge_in_after_s=1.0,
            )
        )
        await settle(url)
        call = await stored_call(settings.database_url, result.call_sid)
    assert result.to_json()["clears"] >= 1
    interrupted = next(t for t in call.turns if t.index == 1)
    assert interrupted.barge_in is True
    assert interrupted.heard_text == "예약 안내해 주세요"
    # the history keeps only what the caller heard: a prefix of what was generated
    assert 0 < len(interrupted.spoken_text) < len(interrupted.generated_text)
    assert interrupted.generated_text.startswith(interrupted.spoken_text.rstrip("…").split(" ")[0])
    follow_up = next(t for t in call.turns if t.index == 2)
    assert follow_up.heard_text == "잠깐만요 그만하세요"


async def test_korean_backchannel_during_our_reply_does_not_barge_in(tmp_path: Path) -> None:
    from hanmadi.loopback import serve_in_thread
    from hanmadi.providers.simulated import ScriptedLLM, SimulatedSTT, SimulatedTTS
    from hanmadi.server import Providers

    port = free_port()
    long_reply = "네, 안내해 드리겠습니다. " + "오늘 안내해 드릴 내용이 아주 많습니다. " * 3
    providers = Providers(
        stt=SimulatedSTT(["예약 안내해 주세요", "네"]),
        llm=ScriptedLLM(script=[(0.1, long_reply)]),
        tts=SimulatedTTS(),
    )
    settings = e2e_settings(tmp_path, port)
    with serve_in_thread(settings, port=port, providers=providers) as url:
        result = await place_call(
            CallerConfig(
                url=url,
                utterances=[voice(1.0), voice(0.5)],  # the second one is a short "네" while we talk
                auth_token=AUTH_TOKEN,
                turns=2,
                barge_in_after_s=1.0,
                answer_timeout_s=3.0,
            )
        )
        await settle(url)
        call = await stored_call(settings.database_url, result.call_sid)
    assert result.to_json()["clears"] == 0
    assert [t.index for t in call.turns] == [0, 1]  # "네" became no turn of its own
    reply = call.turns[1]
    assert reply.barge_in is False
    assert reply.spoken_text == reply.generated_text


async def test_dtmf_is_recorded_with_the_turn(server: tuple[str, object]) -> None:
    url, settings = server
    result = await place_call(
        CallerConfig(url=url, utterances=[voice(1.0)], params={}, auth_token=AUTH_TOKEN, turns=1, dtmf={0: "12"})
    )
    await settle(url)
    call = await stored_call(settings.database_url, result.call_sid)
    assert any("12" in t.dtmf for t in call.turns)


async def test_busy_answer_at_max_calls(tmp_path: Path) -> None:
    from hanmadi.loopback import serve_in_thread

    port = free_port()
    settings = e2e_settings(tmp_path, port, max_calls=1)
    with serve_in_thread(settings, port=port) as url:
        first = asyncio.create_task(
            place_call(CallerConfig(url=url, utterances=[voice(2.0)], params={}, auth_token=AUTH_TOKEN, turns=1))
        )
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                health = (await client.get(f"{url}/healthz")).json()
                if health["active_calls"] >= 1:
                    break
                await asyncio.sleep(0.05)
            params = {**WEBHOOK_PARAMS, "CallSid": "CA" + "9" * 32}
            r = await client.post(
                f"{url}/twilio/voice", data=params, headers={"X-Twilio-Signature": sign(f"{url}/twilio/voice", params)}
            )
        await first
    root = ET.fromstring(r.text)
    say = root.find("Say")
    assert say is not None and say.get("language") == "ko-KR"
    assert root.find("Hangup") is not None
    assert root.find("Connect") is None


async def test_recorded_call_has_a_stereo_wav_served_by_the_api(tmp_path: Path) -> None:
    import wave

    from hanmadi.loopback import serve_in_thread

    port = free_port()
    settings = e2e_settings(tmp_path, port, record_audio=True, recordings_dir=tmp_path / "rec")
    with serve_in_thread(settings, port=port) as url:
        result = await place_call(CallerConfig(url=url, utterances=[voice(1.0)], auth_token=AUTH_TOKEN, turns=1))
        await settle(url)
        async with httpx.AsyncClient() as client:
            r = await client.get(
                f"{url}/api/calls/{result.call_sid}/recording",
                headers={"Authorization": f"Bearer {E2E_ADMIN_TOKEN}"},
            )
    assert r.status_code == 200
    wav_path = tmp_path / "got.wav"
    wav_path.write_bytes(r.content)
    with wave.open(str(wav_path)) as wav:
        assert wav.getnchannels() == 2 and wav.getframerate() == 8000
        frames = wav.readframes(wav.getnframes())
    samples = np.frombuffer(frames, dtype="<i2").reshape(-1, 2)
    assert np.abs(samples[:, 0]).max() > 1000, "caller channel (left) is silent"
    assert np.abs(samples[:, 1]).max() > 1000, "bot channel (right) is silent"
    assert len(samples) / 8000 >= result.duration_s * 0.5
