"""The simulated caller against a tiny in-test bot (websockets) and webhook (Starlette under uvicorn)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import wave
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from websockets.asyncio.server import ServerConnection, serve

from hanmadi.telephony import audio
from hanmadi.telephony import twilio as tw
from hanmadi.telephony.caller import (
    CallerConfig,
    CallerError,
    _Playback,
    load_wav_8k,
    place_call,
    write_wav,
)

AUTH = "test-auth-token"


def tone(seconds: float, freq: float = 440.0) -> bytes:
    """8 kHz PCM16 sine."""
    t = np.arange(round(seconds * 8000)) / 8000
    return bytes((8000 * np.sin(2 * np.pi * freq * t)).astype("<i2").tobytes())


def tone_ulaw(seconds: float) -> bytes:
    return audio.pcm_bytes_to_ulaw(tone(seconds, 300.0))


@dataclass
class Bot:
    """Plays the server: greets, answers each utterance with sentences + marks, clears when interrupted."""

    greeting_s: float = 0.2
    sentences_s: tuple[float, ...] = (0.3, 0.3)
    sentence_pause_s: float = 0.0  # extra delay between sentences → a playback gap at the caller
    endpoint_frames: int = 10  # 200 ms of silence ends the caller's turn
    tokens: tw.StreamTokens | None = None
    marks_received: list[tuple[float, str]] = field(default_factory=list)
    clears_sent: list[float] = field(default_factory=list)
    digits: list[str] = field(default_factory=list)
    starts: list[tw.Start] = field(default_factory=list)
    stops: list[tw.Stop] = field(default_factory=list)
    token_errors: list[str] = field(default_factory=list)
    upgrade_signatures: list[str | None] = field(default_factory=list)
    media_frames: int = 0

    async def handler(self, ws: ServerConnection) -> None:
        self.upgrade_signatures.append(ws.request.headers.get(tw.SIGNATURE_HEADER) if ws.request else None)
        loop = asyncio.get_running_loop()
        guard, clock = tw.StreamGuard(), tw.MediaClock()
        sid = ""
        speech = silence = 0
        turn = 0
        playing_until = 0.0
        speaking: asyncio.Task[None] | None = None

        async def say(turn: int, durations: tuple[float, ...]) -> None:
            nonlocal playing_until
            for index, seconds in enumerate(durations):
                for message in tw.media_messages(sid, tone_ulaw(seconds)):
                    await ws.send(message)
                await ws.send(tw.mark_message(sid, tw.mark_name(turn, index) if turn else "greeting"))
                playing_until = max(loop.time(), playing_until) + seconds
                if self.sentence_pause_s and index + 1 < len(durations):
                    await asyncio.sleep(seconds + self.sentence_pause_s)

        async for raw in ws:
            event = tw.parse_message(raw, max_bytes=64 * 1024)
            guard.check(event)
            if isinstance(event, tw.Start):
                sid = event.stream_sid
                self.starts.append(event)
                if self.tokens is not None:
                    try:
                        self.tokens.redeem(event.custom_parameters.get("token"), event.call_sid)
                    except tw.TokenError as exc:
                        self.token_errors.append(exc.reason)
                        await ws.close(1008, f"stream token: {exc.reason}")
                        return
                speaking = asyncio.create_task(say(0, (self.greeting_s,)))
            elif isinstance(event, tw.Media):
                self.media_frames += 1
                assert clock.gap_ms(event.timestamp_ms) == 0
                if event.payload.count(audio.ULAW_SILENCE) < len(event.payload):
                    speech, silence = speech + 1, 0
                    if speech == 5 and loop.time() < playing_until:  # 100 ms of speech over our audio
                        if speaking:
                            speaking.cancel()
                        await ws.send(tw.clear_message(sid))
                        self.clears_sent.append(loop.time())
                        playing_until = 0.0
                elif speech >= 5:
                    silence += 1
                    if silence >= self.endpoint_frames:
                        speech = silence = 0
                        turn += 1
                        speaking = asyncio.create_task(say(turn, self.sentences_s))
            elif isinstance(event, tw.Mark):
                self.marks_received.append((loop.time(), event.name))
            elif isinstance(event, tw.Dtmf):
                self.digits.append(event.digit)
            elif isinstance(event, tw.Stop):
                self.stops.append(event)
                break
        if speaking:
            speaking.cancel()


@contextlib.asynccontextmanager
async def bot_server(bot: Bot) -> AsyncIterator[str]:
    async with serve(bot.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        yield f"ws://127.0.0.1:{port}{tw.MEDIA_PATH}"


@contextlib.asynccontextmanager
async def webhook_server(stream_url: str, tokens: tw.StreamTokens, *, busy: bool = False) -> AsyncIterator[str]:
    """A Starlette app under uvicorn that checks the signature like the real server and answers TwiML."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    public_url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    async def voice(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        url = tw.webhook_url(public_url, tw.VOICE_PATH)
        if not tw.validate_signature(AUTH, url, form, request.headers.get(tw.SIGNATURE_HEADER)):
            return PlainTextResponse("bad signature", status_code=403)
        if busy:
            return Response(tw.busy_twiml("죄송합니다. 통화 중입니다."), media_type="application/xml")
        twiml = tw.connect_twiml(stream_url, {"token": tokens.issue(form["CallSid"])})
        return Response(twiml, media_type="application/xml")

    app = Starlette(routes=[Route(tw.VOICE_PATH, voice, methods=["POST"])])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
            await asyncio.sleep(0.01)
        yield public_url
    finally:
        server.should_exit = True
        await task
        sock.close()


def caller_tasks() -> set[asyncio.Task[object]]:
    return {t for t in asyncio.all_tasks() if t.get_coro().__qualname__.startswith("_Session.")}  # type: ignore[union-attr]


def config(url: str, **kwargs: object) -> CallerConfig:
    defaults: dict[str, object] = {"utterances": [tone(0.3)], "silence_after_s": 0.3, "answer_timeout_s": 3.0}
    defaults.update(kwargs)
    return CallerConfig(url=url, **defaults)  # type: ignore[arg-type]


async def test_call_over_websocket_measures_turns_and_echoes_marks() -> None:
    bot = Bot(sentence_pause_s=0.15)
    async with bot_server(bot) as url:
        result = await place_call(config(url, turns=2, dtmf={0: "12#"}, params={"lang": "ko"}))

    assert result.answered and result.hung_up_by == "caller"
    assert result.errors == []
    assert bot.starts[0].custom_parameters == {"lang": "ko"} and bot.starts[0].call_sid == result.call_sid
    assert bot.stops and bot.stops[0].call_sid == result.call_sid
    assert bot.digits == ["1", "2", "#"]
    assert result.greeting_audio_s == pytest.approx(0.2)
    assert [t.index for t in result.turns] == [0, 1]
    for turn in result.turns:
        assert turn.first_audio_ms is not None
        assert 150 <= turn.first_audio_ms <= 1000  # the bot waits 200 ms of silence
        assert turn.reply_audio_s == pytest.approx(0.6)
        assert turn.heard_audio_s == pytest.approx(0.6)
        assert len(turn.gaps_ms) == 1 and 100 <= turn.gaps_ms[0] <= 300
        assert not turn.interrupted and not turn.timed_out
    assert result.turns[0].dtmf == "12#"
    # every mark echoed, in order, once its audio had played
    names = ["greeting", "t1s0", "t1s1", "t2s0", "t2s1"]
    assert [m.name for m in result.marks] == names
    assert [name for _, name in bot.marks_received] == names
    assert result.marks_echoed == 5 and not any(m.cleared for m in result.marks)
    greeting_mark = result.marks[0]
    assert greeting_mark.echoed_s - greeting_mark.received_s == pytest.approx(0.2, abs=0.06)
    # the conversation: caller left, bot right, one clock
    stereo = np.frombuffer(result.conversation_stereo(), dtype="<i2").reshape(-1, 2)
    assert stereo.shape[0] == len(result.caller_mulaw)
    assert stereo.shape[0] / 8000 == pytest.approx(result.duration_s, abs=0.1)
    assert np.abs(stereo[:, 1]).sum() > 0 and np.abs(stereo[:, 0]).sum() > 0
    assert len(result.reply_pcm) >= 2 * 8000 * (0.2 + 0.6 * 2)
    report = result.to_json()
    assert report["marks_echoed"] == 5 and report["clears"] == 0
    assert set(report["turns"][0]) >= {"first_audio_ms", "reply_audio_s", "gaps_ms"}
    assert not caller_tasks()


async def test_barge_in_gets_a_clear_and_pending_marks_are_echoed() -> None:
    bot = Bot(sentences_s=(1.0, 1.0))
    async with bot_server(bot) as url:
        result = await place_call(config(url, turns=2, barge_in_after_s=0.3))

    assert len(bot.clears_sent) == 1 and len(result.clears) == 1
    interrupted = result.turns[0]
    assert interrupted.interrupted
    assert interrupted.reply_audio_s == pytest.approx(2.0)
    assert 0.3 <= interrupted.heard_audio_s < 1.2
    cleared = [m for m in result.marks if m.cleared]
    assert [m.name for m in cleared] == ["t1s0", "t1s1"]
    # echoed when the clear arrived, not when the cleared audio would have played out
    cleared_audio_s = interrupted.reply_audio_s - interrupted.heard_audio_s
    assert all(result.clears[0] <= m.echoed_s < result.clears[0] + cleared_audio_s for m in cleared)
    assert all(t >= bot.clears_sent[0] for t, name in bot.marks_received if name in ("t1s0", "t1s1"))
    # the next reply plays in full
    assert result.turns[1].heard_audio_s == pytest.approx(2.0)
    assert [m.name for m in result.marks if not m.cleared] == ["greeting", "t2s0", "t2s1"]
    assert result.to_json()["clears"] == 1


async def test_signed_webhook_then_stream_with_one_time_token() -> None:
    tokens = tw.StreamTokens(AUTH, 30)
    bot = Bot(tokens=tokens, sentences_s=(0.2,))
    async with bot_server(bot) as stream_url, webhook_server(stream_url, tokens) as public_url:
        result = await place_call(config(public_url, auth_token=AUTH))

    assert result.answered and result.stream_url == stream_url
    assert bot.token_errors == []
    assert "token" in bot.starts[0].custom_parameters
    # the upgrade is signed over the stream URL, as Twilio does
    assert tw.validate_signature(AUTH, stream_url, {}, bot.upgrade_signatures[0])
    assert result.turns[0].reply_audio_s == pytest.approx(0.2)


async def test_webhook_with_wrong_auth_token_is_refused() -> None:
    tokens = tw.StreamTokens(AUTH, 30)
    async with webhook_server("ws://127.0.0.1:9/twilio/media", tokens) as public_url:
        with pytest.raises(CallerError, match="403"):
            await place_call(config(public_url, auth_token="wrong"))


async def test_busy_twiml_is_reported_without_a_stream() -> None:
    tokens = tw.StreamTokens(AUTH, 30)
    async with webhook_server("ws://127.0.0.1:9/twilio/media", tokens, busy=True) as public_url:
        result = await place_call(config(public_url, auth_token=AUTH))
    assert not result.answered and result.busy_message == "죄송합니다. 통화 중입니다."


async def test_token_for_another_call_is_closed_by_the_bot() -> None:
    tokens = tw.StreamTokens(AUTH, 30)
    bot = Bot(tokens=tokens)
    async with bot_server(bot) as url:
        result = await place_call(config(url, params={"token": tokens.issue("CAother")}))
    assert bot.token_errors == ["wrong_call"]
    assert result.hung_up_by == "bot" and result.close_code == 1008
    assert result.turns == [] or result.turns[0].timed_out


async def test_cancelling_a_call_leaves_no_task() -> None:
    bot = Bot(sentences_s=(5.0,))
    async with bot_server(bot) as url:
        call = asyncio.create_task(place_call(config(url, turns=3)))
        async with asyncio.timeout(10):  # the call is under way: its tasks run
            while not caller_tasks():  # noqa: ASYNC110 (tasks the caller starts: no event announces them)
                await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
    assert not caller_tasks()


def test_playback_model_marks_and_clear() -> None:
    playback = _Playback()
    playback.add_audio(1.0, b"\x00" * 8000, turn=0)  # plays 1.0 → 2.0
    playback.add_mark(1.1, "a", turn=0)
    playback.add_audio(1.2, b"\x00" * 4000, turn=0)  # queued: plays 2.0 → 2.5
    playback.add_mark(1.3, "b", turn=0)
    assert playback.next_due_s() == pytest.approx(2.0)
    assert [m.name for m in playback.pop_due(1.9)] == []
    assert [m.name for m in playback.pop_due(2.0)] == ["a"]
    assert [m.name for m in playback.clear(2.25)] == ["b"]
    assert [s.played_bytes for s in playback.segments] == [8000, 2000]
    playback.add_audio(3.0, b"\x00" * 800, turn=1)  # after a silence: starts on arrival
    assert playback.segments[-1].start_s == pytest.approx(3.0)


def test_wav_round_trip_resamples_to_8k_mono(tmp_path: Path) -> None:
    path = tmp_path / "in.wav"
    stereo_16k = np.zeros((16000, 2), dtype="<i2")
    stereo_16k[:, 0] = 1000
    stereo_16k[:, 1] = 3000
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(stereo_16k.tobytes())
    pcm = load_wav_8k(path)
    samples = np.frombuffer(pcm, dtype="<i2")
    assert samples.size == 8000
    assert np.median(samples) == pytest.approx(2000, abs=5)
    out = tmp_path / "out.wav"
    write_wav(out, pcm)
    with wave.open(str(out), "rb") as wav:
        assert (wav.getnchannels(), wav.getframerate(), wav.getnframes()) == (1, 8000, 8000)
