"""Reorder buffer properties: any completion order → sends 0..n-1 in order; skipped sentences never block."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hanmadi.engine import EngineConfig, ReorderBuffer, Reply, Timeline
from hanmadi.providers.base import AudioChunk
from hanmadi.providers.simulated import ListSink, ScriptedLLM, SimulatedTTS

# per sentence: (number of chunks, fails after how many chunks or None)
plans = st.lists(st.tuples(st.integers(0, 3), st.one_of(st.none(), st.integers(0, 3))), min_size=1, max_size=8)


def _chunk(index: int, k: int) -> AudioChunk:
    # the chunk's identity is encoded in its audio so the test can check what went out
    return AudioChunk(bytes([index, k]) * 8, 8000)


async def _play(
    n: int, ops: dict[int, list[tuple[str, int]]], schedule: list[int]
) -> tuple[ReorderBuffer, list[tuple[int, AudioChunk | None, str]]]:
    buffer = ReorderBuffer()
    out: list[tuple[int, AudioChunk | None, str]] = []

    async def drain() -> None:
        while (item := await buffer.take()) is not None:
            out.append(item)

    for i in schedule:
        op, k = ops[i].pop(0)
        if op == "put":
            await buffer.put(i, _chunk(i, k))
        elif op == "done":
            await buffer.finish(i)
        else:
            await buffer.fail(i)
        await drain()
    await buffer.close(n)
    await drain()
    return buffer, out


@settings(max_examples=300, deadline=None)
@given(plans=plans, data=st.data())
def test_any_interleaving_releases_in_index_order(plans: list[tuple[int, int | None]], data: st.DataObject) -> None:
    ops: dict[int, list[tuple[str, int]]] = {}
    for i, (chunks, fail_after) in enumerate(plans):
        n = chunks if fail_after is None else min(chunks, fail_after)
        ops[i] = [("put", k) for k in range(n)] + [("done" if fail_after is None else "fail", 0)]
    schedule = data.draw(st.permutations([i for i, seq in ops.items() for _ in seq]))
    buffer, out = asyncio.run(_play(len(plans), ops, schedule))

    assert buffer.complete
    assert buffer.buffered_audio_s == 0.0
    assert [i for i, chunk, _ in out if chunk is None] == list(range(len(plans)))  # every index, in order
    assert [i for i, _, _ in out] == sorted(i for i, _, _ in out)  # nothing of a later sentence jumps ahead
    for i, (chunks, fail_after) in enumerate(plans):
        sent = [c for j, c, _ in out if j == i and c is not None]
        assert sent == [_chunk(i, k) for k in range(len(sent))]  # a prefix, in order
        if fail_after is None:
            assert len(sent) == chunks
            assert (i, None, "done") in out
        else:
            assert (i, None, "failed") in out


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    jobs=st.lists(st.tuples(st.integers(0, 15), st.booleans()), min_size=1, max_size=7),
    window=st.integers(1, 4),
    streaming=st.booleans(),
)
def test_engine_sends_in_order_for_any_tts_timing(jobs: list[tuple[int, bool]], window: int, streaming: bool) -> None:
    texts = [f"{i}번 문장이에요." for i in range(len(jobs))]
    tts = SimulatedTTS(
        latency={t: ms / 1000 for t, (ms, _) in zip(texts, jobs, strict=True)},
        ttfb_s=0.0 if streaming else None,
        stream_chunks=3,
        fail_texts={t for t, (_, fails) in zip(texts, jobs, strict=True) if fails},
        audio_s=0.05,
    )
    sink = ListSink()
    cfg = EngineConfig(first_clause_split=False, max_parallel_tts=window, tts_retries=0, tts_timeout_s=2.0)

    async def main() -> None:
        report = await Reply(tts, sink, cfg, Timeline()).run(ScriptedLLM(script=[(0.0, " ".join(texts))]).stream([]))
        failed = [i for i, (_, fails) in enumerate(jobs) if fails]
        assert report.metrics.skipped == sorted(failed)
        assert report.metrics.order == [i for i in range(len(jobs)) if i not in failed]
        assert report.metrics.max_parallel_tts <= window
        assert tts.max_in_flight <= window

    asyncio.run(main())
    sent = [i for i, (_, fails) in enumerate(jobs) if not fails]
    assert sink.marks == sent
    assert sink.chunk_order() == sorted(sink.chunk_order())
    assert set(sink.chunk_order()) == set(sent)
