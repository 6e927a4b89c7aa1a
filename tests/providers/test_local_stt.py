"""The embedded Vosk STT, fed espeak's Korean: partials then a final, turn resets, decoding off the loop.

espeak's Korean is robotic and the small Vosk model reads it poorly, so these tests check that *some* Korean
comes out, in the right order, never which words.
"""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path
from typing import Any

import pytest

from hanmadi.providers.base import STT, ConfigError, ProviderError, STTStream, Transcript
from hanmadi.providers.local.espeak_tts import EspeakTTS
from hanmadi.providers.local.vosk_stt import VoskStream, VoskSTT

pytestmark = pytest.mark.local

HANGUL = re.compile("[가-힣]")
FRAME_BYTES = 320  # 20 ms at 8 kHz


async def speak(text: str) -> bytes:
    return b"".join([chunk.pcm async for chunk in EspeakTTS().synthesize(text)])


@pytest.fixture(scope="module")
def speech() -> bytes:
    """About two and a half seconds of Korean at 8 kHz, followed by a little silence."""
    return asyncio.run(speak("안녕하세요. 주문한 물건이 아직 안 왔어요.")) + bytes(8000)


@pytest.fixture(scope="module")
def stt() -> VoskSTT:
    stt = VoskSTT()
    asyncio.run(stt.warm_up())
    return stt


async def push_all(stream: STTStream, pcm: bytes) -> list[Transcript]:
    results: list[Transcript] = []
    for i in range(0, len(pcm), FRAME_BYTES):
        results += await stream.push(pcm[i : i + FRAME_BYTES])
    return results


def test_implements_the_protocol(stt: VoskSTT) -> None:
    assert isinstance(stt, STT)
    assert stt.name == "local"


async def test_partials_then_a_korean_final(stt: VoskSTT, speech: bytes) -> None:
    stream = await stt.open(8000)
    assert isinstance(stream, STTStream)
    try:
        partials = await push_all(stream, speech)
        final = await stream.finalize()
    finally:
        await stream.aclose()
    assert partials, "no partial results while the audio was fed"
    assert all(not p.is_final and p.text for p in partials)
    assert [p.audio_s for p in partials] == sorted(p.audio_s for p in partials)
    assert len({p.text for p in partials}) == len(partials), "a partial is only sent when the text changes"
    assert final.is_final
    assert HANGUL.search(final.text), final.text
    assert final.audio_s == pytest.approx(len(speech) / 2 / 8000, abs=0.1)


async def test_finalize_resets_for_the_next_turn(stt: VoskSTT, speech: bytes) -> None:
    stream = await stt.open()
    try:
        await push_all(stream, speech)
        first = await stream.finalize()
        assert (await stream.finalize()).text == ""  # nothing heard since
        second_partials = await push_all(stream, speech)
        second = await stream.finalize()
    finally:
        await stream.aclose()
    assert HANGUL.search(first.text) and HANGUL.search(second.text)
    # the second turn holds only the second utterance, not the first one again
    assert len(second.text) < 1.5 * len(first.text)
    assert second_partials and len(second_partials[0].text) < len(first.text)
    assert second.audio_s > first.audio_s


async def test_reset_forgets_the_turn_without_a_final(stt: VoskSTT, speech: bytes) -> None:
    stream = await stt.open()
    try:
        partials = await push_all(stream, speech)
        await stream.reset()  # the Whisper final pass makes the transcript: Vosk only starts the next turn
        after = await stream.finalize()
    finally:
        await stream.aclose()
    assert partials and HANGUL.search(partials[-1].text)
    assert after.text == ""


class ThreadNoting:
    """Wraps a Vosk recognizer: notes the thread of every call into it."""

    def __init__(self, recognizer: Any) -> None:
        self.recognizer = recognizer
        self.threads: list[int] = []

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.recognizer, name)

        def noted(*args: Any) -> Any:
            self.threads.append(threading.get_ident())
            return method(*args)

        return noted


async def test_decoding_runs_off_the_event_loop(stt: VoskSTT, speech: bytes) -> None:
    stream = await stt.open()
    assert isinstance(stream, VoskStream)
    noting = ThreadNoting(stream._recognizer)
    stream._recognizer = noting
    try:
        await push_all(stream, (speech * 2)[: 2 * 16000])
        await stream.finalize()
    finally:
        await stream.aclose()
    # every decoding step (AcceptWaveform, PartialResult, FinalResult…) ran on the decoder thread, none on the loop's
    assert noting.threads
    assert threading.get_ident() not in noting.threads


async def test_two_calls_have_independent_recognizers(stt: VoskSTT, speech: bytes) -> None:
    one, two = await stt.open(), await stt.open()
    try:
        await push_all(one, speech)
        assert (await two.finalize()).text == ""
        assert HANGUL.search((await one.finalize()).text)
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_closed_stream_refuses_audio(stt: VoskSTT) -> None:
    stream = await stt.open()
    await stream.aclose()
    with pytest.raises(ProviderError) as err:
        await stream.push(bytes(FRAME_BYTES * 10))
    assert err.value.reason == "stt_closed"


async def test_a_missing_model_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        await VoskSTT(model_path=tmp_path).open()


async def test_the_recognizer_is_built_off_the_event_loop(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """p9: ``KaldiRecognizer`` (~100 ms of CPU) was built on the event loop at every call start."""
    import threading

    from hanmadi.providers.local import vosk_stt

    built_on: list[threading.Thread] = []

    def recognizer(model: object, rate: int) -> object:
        built_on.append(threading.current_thread())
        return object()

    monkeypatch.setitem(vosk_stt._models, tmp_path, object())
    monkeypatch.setattr(vosk_stt.vosk, "KaldiRecognizer", recognizer)
    await vosk_stt.VoskSTT(model_path=tmp_path).open(8000)
    assert built_on and built_on[0] is not threading.main_thread()
