"""Benchmark of the embedded stack, provider by provider: espeak-ng, Vosk, Gemma on llama.cpp.

``run()`` returns JSON-able numbers (milliseconds unless named otherwise; medians over repeated runs, since the
machine is shared and noisy). Run it with ``python -m hanmadi.bench.providers``.

- TTS: time to first chunk and total per sentence, and the wall time of a batch of four sentences started
  together — on espeak's one in-process thread and on a pool of two worker processes.
- STT: real-time factor (decoding wall time / audio time) and the cost of feeding one 20 ms frame, fed in
  20 ms blocks (a thread hop per frame) and in 100 ms blocks (the default); the longest stall the event loop
  saw while feeding.
- LLM: load time, time to first token and tokens/s for one request, then three requests at once (they queue
  for the one model), and tokens/s with one thread instead of two.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from hanmadi.providers.base import TTS, Message
from hanmadi.providers.local.espeak_tts import EspeakProcessPoolTTS, EspeakThreadTTS
from hanmadi.providers.local.llama_llm import LlamaLLM
from hanmadi.providers.local.vosk_stt import VoskSTT

SENTENCES = [
    "안녕하세요, 한마디 상담원입니다. 무엇을 도와드릴까요?",
    "주문하신 물건은 내일 오후 세 시까지 배송될 예정입니다.",
    "다른 궁금하신 점이 있으시면 언제든지 말씀해 주세요.",
    "확인해 보니 요금은 이번 달 십오일에 자동으로 결제됩니다.",
]
QUESTIONS = [
    "비밀번호를 잊어버렸어요. 어떻게 해야 하나요?",
    "환불은 언제 되나요?",
    "배송 주소를 바꾸고 싶어요.",
    "영업시간이 어떻게 되나요?",
]
GREETING = Message("assistant", "안녕하세요, 한마디 상담원입니다. 무엇을 도와드릴까요?")
RUNS = 7
FRAME_BYTES = 320  # 20 ms at 8 kHz


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def _median_ms(values: list[float]) -> float:
    return _ms(statistics.median(values))


def _p99(values: list[float]) -> float:
    return sorted(values)[len(values) * 99 // 100] if values else 0.0


async def _timed_synthesis(tts: TTS, text: str) -> tuple[float, float, float]:
    """(first chunk s, total s, audio s) of one sentence."""
    started = time.perf_counter()
    first = 0.0
    audio_s = 0.0
    async for chunk in tts.synthesize(text):
        if not audio_s:
            first = time.perf_counter() - started
        audio_s += chunk.duration_s
    return first, time.perf_counter() - started, audio_s


async def _tts_variant(tts: EspeakThreadTTS | EspeakProcessPoolTTS) -> dict[str, Any]:
    started = time.perf_counter()
    await tts.warm_up()
    warm_up_s = time.perf_counter() - started
    firsts: list[float] = []
    totals: list[float] = []
    audio: list[float] = []
    batches: list[float] = []
    batch_last_first: list[float] = []
    for _ in range(RUNS):
        for text in SENTENCES:
            first, total, audio_s = await _timed_synthesis(tts, text)
            firsts.append(first)
            totals.append(total)
            audio.append(audio_s)
        started = time.perf_counter()
        results = await asyncio.gather(*(_timed_synthesis(tts, text) for text in SENTENCES))
        batches.append(time.perf_counter() - started)
        batch_last_first.append(max(first for first, _, _ in results))
    await tts.aclose()
    return {
        "warm_up_ms": _ms(warm_up_s),
        "first_chunk_ms": _median_ms(firsts),
        "sentence_total_ms": _median_ms(totals),
        "sentence_audio_s": round(statistics.median(audio), 2),
        "real_time_factor": round(statistics.median(t / a for t, a in zip(totals, audio, strict=True)), 4),
        "batch4_wall_ms": _median_ms(batches),
        "batch4_slowest_first_chunk_ms": _median_ms(batch_last_first),
    }


async def bench_tts() -> dict[str, Any]:
    """espeak-ng on its thread vs. a two-process pool."""
    thread = await _tts_variant(EspeakThreadTTS())
    pool = await _tts_variant(EspeakProcessPoolTTS(processes=2))
    return {
        "thread": thread,
        "process_pool_2": pool,
        "batch4_thread_over_pool": round(thread["batch4_wall_ms"] / pool["batch4_wall_ms"], 2),
        "first_chunk_thread_over_pool": round(thread["first_chunk_ms"] / pool["first_chunk_ms"], 3),
    }


async def _speech() -> bytes:
    tts = EspeakThreadTTS()
    pcm = b"".join([c.pcm for text in SENTENCES[:2] async for c in tts.synthesize(text)])
    return pcm + bytes(8000)


async def _ticker(stalls: list[float], period_s: float = 0.005) -> None:
    """Record how late each tick of the event loop comes: the loop's stalls."""
    last = time.perf_counter()
    while True:
        await asyncio.sleep(period_s)
        now = time.perf_counter()
        stalls.append(now - last - period_s)
        last = now


async def _idle_loop_stall(duration_s: float = 1.0) -> float:
    """The longest stall of an idle event loop: what the machine's load alone costs."""
    stalls: list[float] = []
    tick = asyncio.create_task(_ticker(stalls))
    await asyncio.sleep(duration_s)
    tick.cancel()
    return max(stalls, default=0.0)


async def _feed(stt: VoskSTT, pcm: bytes) -> tuple[float, list[float], int]:
    """(wall s, event-loop stalls s, partials) for feeding ``pcm`` frame by frame, then finalize."""
    stalls: list[float] = []
    stream = await stt.open()
    partials = 0
    tick = asyncio.create_task(_ticker(stalls))
    try:
        started = time.perf_counter()
        for i in range(0, len(pcm), FRAME_BYTES):
            partials += len(await stream.push(pcm[i : i + FRAME_BYTES]))
        await stream.finalize()
        wall = time.perf_counter() - started
    finally:
        tick.cancel()
        await stream.aclose()
    return wall, stalls, partials


async def bench_stt() -> dict[str, Any]:
    """Vosk real-time factor and per-frame feeding cost, by feeding block size."""
    pcm = await _speech()
    audio_s = len(pcm) / 2 / 8000
    frames = len(pcm) // FRAME_BYTES
    started = time.perf_counter()
    await VoskSTT().warm_up()
    out: dict[str, Any] = {
        "model_load_ms": _ms(time.perf_counter() - started),
        "audio_s": round(audio_s, 2),
        "idle_max_loop_stall_ms": _ms(await _idle_loop_stall()),
    }
    for block_ms in (20, 100):
        stt = VoskSTT(block_ms=block_ms)
        runs = [await _feed(stt, pcm) for _ in range(3)]
        wall = statistics.median(r[0] for r in runs)
        out[f"block_{block_ms}ms"] = {
            "real_time_factor": round(wall / audio_s, 3),
            "per_frame_ms": _ms(wall / frames),
            "p99_loop_stall_ms": _ms(_p99([stall for r in runs for stall in r[1]])),
            "max_loop_stall_ms": _ms(max(stall for r in runs for stall in r[1])),
            "partials": runs[0][2],
        }
    return out


async def _ask(llm: LlamaLLM, question: str, started: float | None = None) -> tuple[float, float, int]:
    """(first token s, total s, chunks) of one reply, timed from ``started`` (default: now)."""
    started = time.perf_counter() if started is None else started
    first = 0.0
    chunks = 0
    async for _ in llm.stream([GREETING, Message("user", question)]):
        if not chunks:
            first = time.perf_counter() - started
        chunks += 1
    return first, time.perf_counter() - started, chunks


def _tokens_per_s(results: list[tuple[float, float, int]]) -> float:
    rates = [(n - 1) / (total - first) for first, total, n in results if n > 1 and total > first]
    return round(statistics.median(rates), 1) if rates else 0.0


async def _timed(fn: Callable[[], Awaitable[None]]) -> float:
    started = time.perf_counter()
    await fn()
    return time.perf_counter() - started


async def bench_llm() -> dict[str, Any]:
    """Gemma 270M: load, first token, tokens/s, and queueing under three concurrent requests."""
    llm = LlamaLLM(threads=2, seed=1)
    load_s = await _timed(llm.warm_up)
    single = [await _ask(llm, q) for _ in range(2) for q in QUESTIONS]
    concurrent_first: list[list[float]] = []
    concurrent_wall: list[float] = []
    for _ in range(3):
        started = time.perf_counter()
        results = await asyncio.gather(*(_ask(llm, q, started) for q in QUESTIONS[:3]))
        concurrent_wall.append(time.perf_counter() - started)
        concurrent_first.append(sorted(first for first, _, _ in results))
    one_thread = LlamaLLM(threads=1, seed=1)
    await one_thread.warm_up()
    single_one_thread = [await _ask(one_thread, q) for q in QUESTIONS]
    ttft_1 = statistics.median(first for first, _, _ in single)
    ttft_3 = [statistics.median(run[i] for run in concurrent_first) for i in range(3)]
    return {
        "load_ms": _ms(load_s),
        "first_token_ms": _ms(ttft_1),
        "reply_total_ms": _median_ms([total for _, total, _ in single]),
        "reply_tokens": statistics.median(n for _, _, n in single),
        "tokens_per_s": _tokens_per_s(single),
        "three_concurrent": {
            "first_token_ms_sorted": [_ms(t) for t in ttft_3],
            "slowest_first_token_over_single": round(ttft_3[-1] / ttft_1, 1),
            "wall_ms": _median_ms(concurrent_wall),
        },
        "one_thread": {
            "first_token_ms": _median_ms([first for first, _, _ in single_one_thread]),
            "tokens_per_s": _tokens_per_s(single_one_thread),
        },
    }


async def run() -> dict[str, Any]:
    """Measure the embedded stack; every number is JSON-able."""
    return {"tts": await bench_tts(), "stt": await bench_stt(), "llm": await bench_llm()}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(run()), ensure_ascii=False, indent=2))
