"""The realtime scheduler: in-order delivery, the TTS window, the buffered-audio cap, failures, LLM errors, cancel.

Times are tens of milliseconds; assertions are about order and counts, never wall-clock thresholds.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest

from hanmadi.engine import EngineConfig, Reply, Timeline, TimelineEvent, TurnReport
from hanmadi.metrics import REGISTRY
from hanmadi.providers.base import AudioChunk
from hanmadi.providers.simulated import ListSink, ScriptedLLM, SimulatedTTS, TimedSink

TEXTS = [f"{i}번 문장이에요." for i in range(12)]


def at_once(texts: Sequence[str]) -> AsyncIterator[str]:
    """The whole answer in one chunk, right away."""
    return ScriptedLLM(script=[(0.0, " ".join(texts))]).stream([])


def config(**overrides: object) -> EngineConfig:
    base: dict[str, object] = {"first_clause_split": False, "tts_timeout_s": 2.0}
    base.update(overrides)
    return EngineConfig(**base)  # type: ignore[arg-type]


def reply(tts: SimulatedTTS, sink: ListSink | None = None, **overrides: object) -> Reply:
    return Reply(tts, sink or ListSink(), config(**overrides), Timeline())


def first(report: TurnReport, kind: str, index: int | None = None) -> int:
    """Position of the first event of ``kind`` (for ``index``) in the timeline."""
    return next(n for n, e in enumerate(report.events) if e.kind == kind and (index is None or e.index == index))


def kinds(report: TurnReport, index: int) -> list[str]:
    return [e.kind for e in report.events if e.index == index and e.kind != "chunk_sent"]


async def test_sends_in_order_whatever_the_completion_order() -> None:
    latency = {t: 0.06 - 0.01 * (i % 5) for i, t in enumerate(TEXTS[:6])}  # later sentences finish first
    sink = ListSink()
    report = await reply(SimulatedTTS(latency=latency), sink).run(at_once(TEXTS[:6]))
    assert sink.order == [0, 1, 2, 3, 4, 5]
    assert sink.chunk_order() == sorted(sink.chunk_order())
    assert report.metrics.order == [0, 1, 2, 3, 4, 5]
    assert report.spoken_text == " ".join(TEXTS[:6])
    assert not report.cancelled
    assert report.events[-1].kind == "done"
    assert kinds(report, 0) == ["sentence", "tts_start", "tts_done", "send_start", "send_done"]
    assert sink.max_concurrent_sends == 1


async def test_window_bounds_tts_jobs_in_flight_but_not_the_llm() -> None:
    tts = SimulatedTTS(latency=0.03)
    report = await reply(tts, max_parallel_tts=3).run(at_once(TEXTS))
    assert tts.max_in_flight == 3
    assert report.metrics.max_parallel_tts == 3
    assert report.metrics.order == list(range(12))
    # every sentence was taken from the LLM before the first TTS finished: the window never held the stream back
    last_generated = max(n for n, e in enumerate(report.events) if e.kind == "sentence")
    assert last_generated < first(report, "tts_done")


async def test_buffered_audio_cap_holds_new_jobs_until_the_head_is_sent() -> None:
    texts = TEXTS[:8]
    done: set[int] = set()
    three_waiting = asyncio.Event()

    def listener(ev: TimelineEvent) -> None:
        if ev.kind == "tts_done" and ev.index is not None:
            done.add(ev.index)
            if {1, 2, 3} <= done:
                three_waiting.set()

    async def answer() -> AsyncIterator[str]:
        yield " ".join(texts[:4]) + " "
        await three_waiting.wait()  # 1.2 s of audio now waits behind the slow head
        yield " ".join(texts[4:])

    latency = {t: 0.01 for t in texts} | {texts[0]: 0.3}
    tts = SimulatedTTS(latency=latency, audio_s=0.4)
    cfg = config(max_parallel_tts=8, max_buffered_audio_s=1.0)
    report = await Reply(tts, ListSink(), cfg, Timeline(listeners=[listener])).run(answer())
    assert report.metrics.order == list(range(8))
    assert first(report, "tts_start", 4) > first(report, "send_start", 0)
    # invariant: a job only starts while less than the cap of finished audio waits to be sent
    waiting = 0.0
    for ev in report.events:
        if ev.kind == "tts_done":
            waiting += ev.audio_s or 0.0
        elif ev.kind == "send_start":
            waiting -= 0.4
        elif ev.kind == "tts_start":
            assert waiting < 1.0 - 1e-9


async def test_failed_sentence_is_skipped_after_a_retry_and_never_blocks() -> None:
    skipped_before = REGISTRY.get_sample_value("hanmadi_sentences_skipped_total", {"reason": "http_500"}) or 0.0
    tts = SimulatedTTS(latency=0.02, fail_texts={TEXTS[1]})
    sink = ListSink()
    report = await reply(tts, sink, tts_retries=1).run(at_once(TEXTS[:4]))
    assert sink.order == [0, 2, 3]
    assert tts.calls.count(TEXTS[1]) == 2
    assert report.metrics.skipped == [1]
    assert [s.status for s in report.sentences] == ["sent", "skipped", "sent", "sent"]
    assert kinds(report, 1) == ["sentence", "tts_start", "tts_retry", "skip"]
    skip = report.events[first(report, "skip", 1)]
    assert skip.reason == "http_500"
    # the engine records no process-wide metric: the call layer derives them from this report
    after = REGISTRY.get_sample_value("hanmadi_sentences_skipped_total", {"reason": "http_500"}) or 0.0
    assert after == skipped_before


async def test_timeout_then_retry_succeeds() -> None:
    tts = SimulatedTTS(latency=0.01, stall_calls={0})  # the first attempt of sentence 0 never answers
    sink = ListSink()
    report = await reply(tts, sink, tts_timeout_s=0.1, tts_retries=1).run(at_once(TEXTS[:2]))
    assert sink.order == [0, 1]
    retry = report.events[first(report, "tts_retry", 0)]
    assert retry.reason == "timeout"
    assert report.metrics.skipped == []


async def test_timeout_without_retry_skips() -> None:
    tts = SimulatedTTS(latency=0.01, stall_texts={TEXTS[0]})
    sink = ListSink()
    report = await reply(tts, sink, tts_timeout_s=0.1, tts_retries=0).run(at_once(TEXTS[:3]))
    assert sink.order == [1, 2]
    assert report.events[first(report, "skip", 0)].reason == "timeout"


async def test_streaming_head_goes_out_as_it_arrives_others_wait() -> None:
    tts = SimulatedTTS(latency={TEXTS[0]: 0.3, TEXTS[1]: 0.05}, ttfb_s=0.01, stream_chunks=4, audio_s=0.4)
    sink = ListSink()
    report = await reply(tts, sink).run(at_once(TEXTS[:2]))
    assert sink.chunk_order() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert sink.order == [0, 1]
    # the head's first chunk reached the sink before its TTS was over; sentence 1 (done early) waited for 0
    first_chunk = next(n for n, e in enumerate(report.events) if e.kind == "chunk_sent" and e.index == 0)
    assert first_chunk < first(report, "tts_done", 0)
    assert first(report, "tts_done", 1) < first(report, "send_start", 1)
    assert report.metrics.first_audio_s == report.events[first_chunk].t
    assert report.sentences[0].sent_audio_s == pytest.approx(0.4)


async def test_stream_cut_after_its_start_went_out_is_marked_not_resent() -> None:
    tts = SimulatedTTS(latency=0.1, ttfb_s=0.01, stream_chunks=4, fail_texts={TEXTS[0]}, fail_after_chunks=2)
    sink = ListSink()
    report = await reply(tts, sink, tts_retries=1).run(at_once(TEXTS[:2]))
    assert tts.calls.count(TEXTS[0]) == 1  # no retry once audio was delivered
    assert sink.chunk_order()[:2] == [0, 0] and 0 not in sink.chunk_order()[2:]
    assert sink.marks == [0, 1]  # the cut sentence is closed for the caller, then the next one plays
    assert report.sentences[0].status == "skipped"
    assert 0 < report.sentences[0].sent_audio_s < report.sentences[1].sent_audio_s
    assert report.metrics.order == [1]


async def test_llm_error_speaks_what_was_complete_then_the_fallback() -> None:
    llm = ScriptedLLM(script=[(0.0, "안녕하세요! "), (0.01, "오늘은 날씨가 "), (0.5, "좋아요.")], fail_after_s=0.03)
    sink = ListSink()
    errors_before = REGISTRY.get_sample_value(
        "hanmadi_provider_errors_total", {"provider": "simulated", "reason": "stream_broken"}
    )
    r = reply(SimulatedTTS(latency=0.01), sink, fallback_text="죄송합니다, 다시 말씀해 주세요.")
    report = await r.run(llm.stream([]))
    assert report.llm_error == "stream_broken"
    assert report.spoken_text == "안녕하세요! 죄송합니다, 다시 말씀해 주세요."
    assert sink.order == [0, 1]
    assert report.events[first(report, "sentence", 1)].final
    assert first(report, "llm_error") < first(report, "sentence", 1)
    errors_after = REGISTRY.get_sample_value(
        "hanmadi_provider_errors_total", {"provider": "simulated", "reason": "stream_broken"}
    )
    assert errors_after == errors_before  # counted by the call layer from the report, not here


async def test_llm_error_without_fallback_keeps_the_call_going() -> None:
    llm = ScriptedLLM(script=[(0.0, "안녕하세요! 그리고")], fail_after_s=0.01)
    report = await reply(SimulatedTTS(latency=0.01)).run(llm.stream([]))
    assert report.spoken_text == "안녕하세요!"
    assert report.llm_error == "stream_broken" and not report.cancelled


async def test_flushed_last_sentence_is_marked_final() -> None:
    report = await reply(SimulatedTTS(latency=0.01)).run(at_once(["안녕하세요!", "마침표 없는 마지막 말"]))
    finals = [e.final for e in report.events if e.kind == "sentence"]
    assert finals == [False, True]


def _slow_answer() -> AsyncIterator[str]:
    return ScriptedLLM.from_sentences([(0.01, TEXTS[0]), (0.01, TEXTS[1]), (5.0, TEXTS[2])]).stream([])


async def test_cancel_stops_everything_and_reports_what_was_sent() -> None:
    before = asyncio.all_tasks()
    sent = asyncio.Event()
    timeline = Timeline(listeners=[lambda ev: sent.set() if ev.kind == "send_done" and ev.index == 0 else None])
    tts = SimulatedTTS(latency={TEXTS[0]: 0.01, TEXTS[1]: 5.0}, audio_s=0.3)
    sink = TimedSink(0.01)
    r = Reply(tts, sink, config(), timeline)
    run_task = asyncio.create_task(r.run(_slow_answer()))
    await sent.wait()
    report = await r.cancel()
    assert asyncio.all_tasks() - before - {run_task} == set()  # only the caller's own task is left
    assert tts.in_flight == 0
    assert report.cancelled
    assert [(s.index, s.status) for s in report.sentences] == [(0, "sent"), (1, "cancelled")]
    assert report.sentences[0].sent_audio_s == pytest.approx(0.3)
    assert report.sentences[1].sent_audio_s == 0.0
    assert report.spoken_text == TEXTS[0]
    assert report.events[-1].kind == "cancel" and report.events[-1].reason == "barge_in"
    assert await run_task is report  # run() returns the cancelled report instead of raising
    assert asyncio.all_tasks() == before
    assert await r.cancel() is report


async def test_cancelling_the_run_task_leaves_no_task() -> None:
    before = asyncio.all_tasks()
    sent = asyncio.Event()
    timeline = Timeline(listeners=[lambda ev: sent.set() if ev.kind == "send_done" else None])
    tts = SimulatedTTS(latency={TEXTS[0]: 0.01, TEXTS[1]: 5.0})
    r = Reply(tts, ListSink(), config(), timeline)
    run_task = asyncio.create_task(r.run(_slow_answer()))
    await sent.wait()
    run_task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run_task
    assert asyncio.all_tasks() == before
    assert tts.in_flight == 0
    assert r.report is not None and r.report.cancelled
    assert r.report.events[-1].reason == "cancelled"


async def test_cancel_before_run() -> None:
    r = reply(SimulatedTTS())
    report = await r.cancel("hangup")
    assert report.cancelled and report.sentences == []
    assert await r.run(at_once(TEXTS[:2])) is report


async def test_cancel_right_after_run_started() -> None:
    before = asyncio.all_tasks()
    r = reply(SimulatedTTS(latency=0.01))
    run_task = asyncio.create_task(r.run(at_once(TEXTS[:2])))
    await asyncio.sleep(0)  # run() has created its driver task, which has not run yet
    report = await r.cancel()
    assert report.cancelled
    assert await run_task is report
    assert asyncio.all_tasks() == before


@pytest.mark.parametrize("strategy", ["realtime", "two_stage", "sequential"])
async def test_sink_failure_surfaces_and_leaves_no_task(strategy: str) -> None:
    class BrokenSink(ListSink):
        async def send_audio(self, index: int, chunk: AudioChunk) -> None:
            raise ConnectionError("websocket closed")

    before = asyncio.all_tasks()
    r = reply(SimulatedTTS(latency=0.01), BrokenSink(), strategy=strategy)
    with pytest.raises(ConnectionError):
        await r.run(at_once(TEXTS[:3]))
    assert asyncio.all_tasks() == before
    assert r.report is not None and r.report.cancelled
    assert r.report.events[-1].reason == "error"


@pytest.mark.parametrize("strategy", ["two_stage", "sequential"])
async def test_other_strategies_keep_order_and_skip_failures(strategy: str) -> None:
    tts = SimulatedTTS(latency={t: 0.04 - 0.01 * i for i, t in enumerate(TEXTS[:4])}, fail_texts={TEXTS[2]})
    sink = ListSink()
    report = await reply(tts, sink, strategy=strategy, tts_retries=0).run(at_once(TEXTS[:4]))
    assert sink.order == [0, 1, 3]
    assert report.metrics.skipped == [2]
    assert report.events[0].text == strategy
    # both wait for the whole answer before any TTS
    assert max(n for n, e in enumerate(report.events) if e.kind == "sentence") < first(report, "tts_start")
    if strategy == "sequential":
        assert report.metrics.max_parallel_tts == 1


async def test_unknown_strategy_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'fastest'"):
        reply(SimulatedTTS(), strategy="fastest")


def test_config_from_settings() -> None:
    from hanmadi.config import Settings

    s = Settings(max_parallel_tts=2, tts_retries=0, strategy="sequential", llm_fallback="다시요.")
    c = s.engine_config()
    assert (c.max_parallel_tts, c.tts_retries, c.strategy, c.fallback_text) == (2, 0, "sequential", "다시요.")


async def test_empty_answer_is_done_at_once() -> None:
    sink = ListSink()
    report = await reply(SimulatedTTS(), sink).run(ScriptedLLM(script=[]).stream([]))
    assert report.sentences == [] and sink.chunks == [] and not report.cancelled
    assert report.events[-1].kind == "done"
    assert report.metrics.first_audio_s is None


async def test_llm_failing_before_any_text_speaks_only_the_fallback() -> None:
    llm = ScriptedLLM(script=[(0.05, "안녕")], fail_after_s=0.0)
    report = await reply(SimulatedTTS(latency=0.01), fallback_text="잠시 문제가 생겼어요.").run(llm.stream([]))
    assert report.spoken_text == "잠시 문제가 생겼어요."
    assert report.metrics.first_audio_s is not None
