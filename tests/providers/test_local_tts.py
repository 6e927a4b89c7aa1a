"""The embedded espeak-ng TTS: Korean audio at 8 kHz, streamed, parallel-safe, cancellable."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from hanmadi.providers.base import TTS, AudioChunk, ProviderError
from hanmadi.providers.local import espeak_tts
from hanmadi.providers.local.espeak_tts import (
    EspeakProcessPoolTTS,
    EspeakThreadTTS,
    EspeakTTS,
    synthesized_audio_s,
)

pytestmark = pytest.mark.local

SENTENCES = [
    "안녕하세요, 한마디 상담원입니다.",
    "주문하신 물건은 내일 오후에 도착할 예정입니다.",
    "다른 궁금하신 점이 있으시면 말씀해 주세요.",
    "요금은 이번 달 십오일에 자동으로 결제됩니다.",
]
LONG_TEXT = " ".join(SENTENCES * 4)


@pytest.fixture(scope="module")
def pool_tts() -> Iterator[EspeakProcessPoolTTS]:
    tts = EspeakProcessPoolTTS(processes=2)
    asyncio.run(tts.warm_up())
    yield tts
    asyncio.run(tts.aclose())


async def collect(tts: TTS, text: str) -> list[AudioChunk]:
    return [chunk async for chunk in tts.synthesize(text)]


def samples(chunks: list[AudioChunk]) -> np.ndarray:
    return np.frombuffer(b"".join(c.pcm for c in chunks), dtype="<i2")


def test_default_is_the_streaming_thread_variant() -> None:
    assert EspeakTTS is EspeakThreadTTS
    assert isinstance(EspeakTTS(), TTS)
    assert EspeakTTS().name == "local"


async def test_korean_sentence_is_audible_8khz_of_plausible_length() -> None:
    chunks = await collect(EspeakTTS(), "안녕하세요, 무엇을 도와드릴까요?")
    assert chunks and all(c.sample_rate == 8000 for c in chunks)
    audio = samples(chunks)
    duration_s = audio.size / 8000
    # 14 syllables at espeak's default rate: about two seconds
    assert 0.8 < duration_s < 5.0
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    assert rms > 500
    assert np.abs(audio).max() > 5000


async def test_a_long_sentence_streams_in_many_small_chunks() -> None:
    chunks = await collect(EspeakTTS(), SENTENCES[1] + " " + SENTENCES[2])
    assert len(chunks) > 5
    assert max(c.duration_s for c in chunks) <= 0.15


async def test_first_audio_comes_before_the_synthesis_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first chunk reaches the consumer while espeak is still synthesizing: the synthesis holds after its first
    buffer until the consumer has it (a TTS that buffered the whole sentence would never hand it over)."""
    engine = espeak_tts._process_engine()
    consumer_has_first = threading.Event()
    handed_over: list[bool] = []

    class HoldingEngine:
        def synthesize(self, text: str, voice: str, rate: int, sink: Callable[[bytes], bool]) -> None:
            def holding_sink(pcm: bytes) -> bool:
                going_on = sink(pcm)
                if not handed_over:
                    handed_over.append(consumer_has_first.wait(timeout=30))  # a hang guard, not a timing bound
                return going_on

            engine.synthesize(text, voice, rate, holding_sink)

    monkeypatch.setattr(espeak_tts, "_process_engine", lambda: HoldingEngine())
    chunks = 0
    async for _ in EspeakTTS().synthesize(LONG_TEXT):
        chunks += 1
        consumer_has_first.set()
    assert handed_over == [True] and chunks > 1


async def test_empty_text_yields_nothing() -> None:
    assert await collect(EspeakTTS(), "  ") == []


async def test_unknown_voice_is_a_provider_error() -> None:
    with pytest.raises(ProviderError) as err:
        await collect(EspeakTTS(voice="no-such-voice"), "안녕하세요")
    assert err.value.provider == "local" and err.value.reason == "tts_voice"


async def test_rate_changes_duration() -> None:
    slow = samples(await collect(EspeakTTS(rate=120), SENTENCES[1])).size
    fast = samples(await collect(EspeakTTS(rate=300), SENTENCES[1])).size
    assert fast < slow * 0.7


def same_lengths(got: list[list[AudioChunk]], expected: list[int]) -> bool:
    """espeak adds a little randomness, so each sentence's length only matches within a few percent."""
    return all(abs(samples(chunks).size - n) < 0.03 * n for chunks, n in zip(got, expected, strict=True))


async def test_parallel_sentences_on_the_thread_do_not_mix() -> None:
    tts = EspeakTTS()
    alone = [samples(await collect(tts, s)).size for s in SENTENCES]
    together = await asyncio.gather(*(collect(tts, s) for s in SENTENCES))
    assert same_lengths(together, alone)


async def test_process_pool_synthesizes_parallel_sentences(pool_tts: EspeakProcessPoolTTS) -> None:
    thread = [samples(await collect(EspeakTTS(), s)).size for s in SENTENCES]
    together = await asyncio.gather(*(collect(pool_tts, s) for s in SENTENCES))
    assert all(c.sample_rate == 8000 for chunks in together for c in chunks)
    assert same_lengths(together, thread)


async def test_stopping_early_aborts_the_synthesis() -> None:
    tts = EspeakTTS()
    before = synthesized_audio_s()
    await collect(tts, "가")
    short_made = synthesized_audio_s() - before
    before = synthesized_audio_s()
    full = samples(await collect(tts, LONG_TEXT)).size / 8000
    full_made = synthesized_audio_s() - before

    before = synthesized_audio_s()
    async with contextlib.aclosing(tts.synthesize(LONG_TEXT)) as chunks:
        async for _ in chunks:
            break
    await collect(tts, "가")  # runs after the aborted job, on the same espeak thread
    aborted_made = synthesized_audio_s() - before - short_made
    assert full > 20
    assert aborted_made < full_made / 4


async def test_cancelling_the_consumer_task_aborts_too() -> None:
    tts = EspeakTTS()
    got_one = asyncio.Event()

    async def consume() -> None:
        async for _ in tts.synthesize(LONG_TEXT):
            got_one.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(consume())
    await got_one.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    before = synthesized_audio_s()
    await collect(tts, "가")
    # only the tail of the aborted job (at most a buffer) and the short word were made after the cancel
    assert synthesized_audio_s() - before < 1.0
