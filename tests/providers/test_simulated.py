"""Simulated providers: they are real implementations of the provider interfaces, so they get real tests."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from hanmadi.providers.base import LLM, STT, TTS, AudioChunk, Message, ProviderError, STTStream
from hanmadi.providers.simulated import (
    ListSink,
    ScriptedLLM,
    SimulatedSTT,
    SimulatedTTS,
    TimedSink,
    default_audio_s,
    default_tts_latency,
    speech_like_pcm,
)


def test_they_implement_the_protocols() -> None:
    assert isinstance(ScriptedLLM(), LLM)
    assert isinstance(SimulatedTTS(), TTS)
    assert isinstance(SimulatedSTT(), STT)


def test_from_sentences_ends_each_sentence_at_its_emit_time() -> None:
    sentences = [(0.5, "안녕하세요!"), (1.0, "오늘 날씨가 좋네요."), (1.5, "산책 어떠세요?")]
    llm = ScriptedLLM.from_sentences(sentences)
    assert llm.script is not None
    assert "".join(chunk for _, chunk in llm.script) == "안녕하세요! 오늘 날씨가 좋네요. 산책 어떠세요?"
    times = [t for t, _ in llm.script]
    assert times == sorted(times)
    text = ""
    for t, chunk in llm.script:
        text += chunk
        if text.endswith(("!", ".", "?")):
            assert t == pytest.approx(next(e for e, s in sentences if text.endswith(s)))


async def test_scripted_stream_releases_chunks_in_order_not_before_their_time() -> None:
    llm = ScriptedLLM(script=[(0.0, "가"), (0.02, "나"), (0.04, "다")])
    started = time.monotonic()
    got = []
    async for chunk in llm.stream([]):
        got.append((chunk, time.monotonic() - started))
    assert [c for c, _ in got] == ["가", "나", "다"]
    assert got[-1][1] >= 0.039


async def test_canned_reply_echoes_the_caller() -> None:
    llm = ScriptedLLM(first_token_s=0.0, token_s=0.0)
    text = "".join([c async for c in llm.stream([Message("user", "예약을 바꾸고 싶어요")])])
    assert text == "네, '예약을 바꾸고 싶어요'라고 말씀하셨네요. 더 도와드릴 일이 있을까요?"
    assert "".join([c async for c in llm.stream([])]) == "안녕하세요, 무엇을 도와드릴까요?"


async def test_llm_dies_mid_stream() -> None:
    llm = ScriptedLLM(script=[(0.0, "안녕"), (0.05, "하세요")], fail_after_s=0.01)
    got = []
    with pytest.raises(ProviderError) as info:
        async for chunk in llm.stream([]):
            got.append(chunk)
    assert got == ["안녕"]
    assert info.value.reason == "stream_broken" and info.value.provider == "simulated"


def test_speech_like_pcm_is_real_audio() -> None:
    pcm = speech_like_pcm("안녕하세요", 0.5)
    samples = np.frombuffer(pcm, dtype="<i2")
    assert len(samples) == 4000
    assert 100 < np.abs(samples).max() < 32767
    assert speech_like_pcm("안녕하세요", 0.5) == pcm  # deterministic per text


async def test_tts_one_chunk_of_the_right_length() -> None:
    tts = SimulatedTTS(latency=0.01, audio_s={"안녕하세요!": 0.52})
    chunks = [c async for c in tts.synthesize("안녕하세요!")]
    assert len(chunks) == 1
    assert chunks[0].sample_rate == 8000
    assert chunks[0].duration_s == pytest.approx(0.52)
    assert tts.calls == ["안녕하세요!"] and tts.in_flight == 0


async def test_tts_default_profile() -> None:
    assert default_tts_latency("가나다") == pytest.approx(0.21)
    assert default_audio_s("가 나 다") == pytest.approx(0.36)
    tts = SimulatedTTS()
    assert tts.latency_for("가나다") == pytest.approx(0.21)
    assert tts.ttfb_for("가나다") is None


async def test_tts_streaming_chunks() -> None:
    tts = SimulatedTTS(latency=0.04, ttfb_s=0.0, stream_chunks=4, audio_s=0.4)
    chunks = [c async for c in tts.synthesize("스트리밍")]
    assert len(chunks) == 4
    assert sum(c.duration_s for c in chunks) == pytest.approx(0.4)
    assert b"".join(c.pcm for c in chunks) == speech_like_pcm("스트리밍", 0.4)


async def test_tts_failures() -> None:
    tts = SimulatedTTS(latency=0.0, fail_texts={"실패"}, fail_calls={1})
    with pytest.raises(ProviderError):
        _ = [c async for c in tts.synthesize("실패")]
    with pytest.raises(ProviderError):
        _ = [c async for c in tts.synthesize("괜찮아")]  # call number 1
    assert len([c async for c in tts.synthesize("괜찮아")]) == 1
    streaming = SimulatedTTS(latency=0.0, ttfb_s=0.0, fail_texts={"끊김"}, fail_after_chunks=2)
    got: list[AudioChunk] = []
    with pytest.raises(ProviderError):
        async for c in streaming.synthesize("끊김"):
            got.append(c)
    assert len(got) == 2
    assert tts.in_flight == streaming.in_flight == 0


async def test_tts_stall_ends_with_the_callers_timeout() -> None:
    tts = SimulatedTTS(stall_texts={"멈춤"})
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):
            _ = [c async for c in tts.synthesize("멈춤")]
    assert tts.in_flight == 0


async def test_tts_counts_concurrency() -> None:
    tts = SimulatedTTS(latency=0.02)

    async def one(text: str) -> None:
        _ = [c async for c in tts.synthesize(text)]

    async with asyncio.TaskGroup() as tg:
        for i in range(3):
            tg.create_task(one(f"{i}"))
    assert tts.max_in_flight == 3 and tts.in_flight == 0


async def test_stt_partials_then_final_per_turn() -> None:
    stt = SimulatedSTT(["예약 변경 부탁드려요", "감사합니다"], partial_every_s=0.1)
    stream = await stt.open()
    assert isinstance(stream, STTStream)
    frame = b"\x00\x00" * 800  # 0.1 s at 8 kHz
    partials = [t for _ in range(5) for t in await stream.push(frame)]
    assert [p.text for p in partials] == ["예약", "예약 변경", "예약 변경 부탁드려요"]
    assert not any(p.is_final for p in partials)
    final = await stream.finalize()
    assert final.is_final and final.text == "예약 변경 부탁드려요"
    assert final.audio_s == pytest.approx(0.5)
    assert (await stream.finalize()).text == "감사합니다"
    assert (await stream.finalize()).text == ""
    await stream.aclose()
    assert stream.closed


async def test_stt_callable_transcripts() -> None:
    stream = await SimulatedSTT(lambda turn: f"{turn}번째 말").open()
    assert (await stream.finalize()).text == "0번째 말"
    assert (await stream.finalize()).text == "1번째 말"


async def test_sinks_record_in_order_and_pay_the_send_latency_once_per_sentence() -> None:
    chunk = AudioChunk(b"\x01\x00" * 80, 8000)
    sink = TimedSink(0.03)
    started = time.monotonic()
    for index in (0, 0, 1):
        await sink.send_audio(index, chunk)
    await sink.send_mark(1)
    assert time.monotonic() - started >= 0.059  # sentences 0 and 1 each paid 0.03 once
    assert sink.chunk_order() == [0, 0, 1]
    assert sink.order == [1]
    assert sink.audio_s(0) == pytest.approx(0.02)
    assert sink.audio_s() == pytest.approx(0.03)
    plain = ListSink()
    await plain.send_audio(3, chunk)
    assert plain.chunks == [(3, chunk)] and plain.max_concurrent_sends == 1


async def test_default_stt_keeps_the_call_going() -> None:
    stream = await SimulatedSTT().open()
    lines = [(await stream.finalize()).text for _ in range(4)]
    assert all(lines) and lines[3] == lines[0]
