"""The engine gives each sentence's TTS job its speakable text; the timeline and the reports keep the written one."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import pytest

from hanmadi.engine import EngineConfig, Reply, Timeline, TimelineEvent
from hanmadi.providers.simulated import ListSink, ScriptedLLM, SimulatedTTS
from hanmadi.text import speaker

WRITTEN = ["네, 3시에 4명으로 예약했어요.", "총 12,500원입니다.", "문의는 010-1234-5678로 주세요."]
SPOKEN = ["네, 세 시에 네 명으로 예약했어요.", "총 만 이천오백 원입니다.", "문의는 공일공 일이삼사 오육칠팔로 주세요."]


def _answer() -> AsyncIterator[str]:
    return ScriptedLLM(script=[(0.0, " ".join(WRITTEN))]).stream([])


def _config(**overrides: object) -> EngineConfig:
    values: dict[str, object] = {"first_clause_split": False, "speakable": speaker("ko")}
    values.update(overrides)
    return EngineConfig(**values)  # type: ignore[arg-type]


async def test_tts_gets_the_spoken_text_and_the_timeline_keeps_the_written_one() -> None:
    tts = SimulatedTTS(latency=0.0)
    report = await Reply(tts, ListSink(), _config(), Timeline()).run(_answer())
    assert sorted(tts.calls) == sorted(SPOKEN)
    assert [s.text for s in report.sentences] == WRITTEN
    assert [s.spoken for s in report.sentences] == SPOKEN
    assert [e.text for e in report.events if e.kind == "sentence"] == WRITTEN
    assert report.spoken_text == " ".join(WRITTEN)
    assert report.speech_text == " ".join(SPOKEN)
    as_dict = report.to_dict()
    assert as_dict["sentences"][1]["text"] == WRITTEN[1] and as_dict["sentences"][1]["spoken"] == SPOKEN[1]
    assert as_dict["speech_text"] == " ".join(SPOKEN)


async def test_without_speakable_the_tts_gets_the_written_text() -> None:
    tts = SimulatedTTS(latency=0.0)
    report = await Reply(tts, ListSink(), _config(speakable=None), Timeline()).run(_answer())
    assert sorted(tts.calls) == sorted(WRITTEN)
    assert [s.spoken for s in report.sentences] == WRITTEN


async def test_a_skipped_sentence_is_logged_with_its_written_text() -> None:
    tts = SimulatedTTS(latency=0.0, fail_texts={SPOKEN[1]})
    report = await Reply(tts, ListSink(), _config(tts_retries=0), Timeline()).run(_answer())
    skipped = [e for e in report.events if e.kind == "skip"]
    assert [(e.index, e.text) for e in skipped] == [(1, WRITTEN[1])]
    assert report.speech_text == f"{SPOKEN[0]} {SPOKEN[2]}"


async def test_a_failing_speakable_costs_nothing_but_its_rewrite(caplog: pytest.LogCaptureFixture) -> None:
    def broken(text: str) -> str:
        raise RuntimeError("rule bug")

    tts = SimulatedTTS(latency=0.0)
    with caplog.at_level(logging.ERROR, logger="hanmadi.engine.scheduler"):
        report = await Reply(tts, ListSink(), _config(speakable=broken), Timeline()).run(_answer())
    assert sorted(tts.calls) == sorted(WRITTEN)
    assert [s.status for s in report.sentences] == ["sent", "sent", "sent"]
    assert "speakable text failed" in caplog.text and "RuntimeError: rule bug" in caplog.text


async def test_a_sentence_is_not_held_for_its_closing_run_when_the_llm_goes_quiet() -> None:
    # The LLM sends "정말요?" and then nothing until the sentence has been generated: were the engine waiting for
    # the next character to close the run, this would never finish.
    generated = asyncio.Event()

    def on_event(event: TimelineEvent) -> None:
        if event.kind == "sentence":
            generated.set()

    async def quiet_after_the_question() -> AsyncIterator[str]:
        yield "정말요?"
        await generated.wait()
        yield " 네, 맞아요."

    tts = SimulatedTTS(latency=0.0)
    async with asyncio.timeout(10):  # a hang guard, not a measurement
        report = await Reply(tts, ListSink(), _config(), Timeline(listeners=[on_event])).run(quiet_after_the_question())
    assert [s.text for s in report.sentences] == ["정말요?", "네, 맞아요."]


async def test_a_closing_run_that_arrives_within_the_wait_is_kept() -> None:
    async def run_in_two_tokens() -> AsyncIterator[str]:
        yield "정말요?"
        for _ in range(3):
            await asyncio.sleep(0)  # the next token takes a few loop turns
        yield "! 잠시만요"
        yield "..."
        yield " 확인할게요."

    tts = SimulatedTTS(latency=0.0)
    report = await Reply(tts, ListSink(), _config(closing_run_wait_s=5.0), Timeline()).run(run_in_two_tokens())
    assert [s.text for s in report.sentences] == ["정말요?!", "잠시만요...", "확인할게요."]
    assert tts.calls[:2] == ["정말요?!", "잠시만요..."]


async def test_a_reply_cancelled_as_the_llm_ends_leaves_no_unretrieved_task() -> None:
    """The LLM's end and the reply's cancel land in the same loop turn while a sentence waits for its closing run:
    the end nobody awaits any more is read, not left as 'Task exception was never retrieved' (seen in socket fuzz)."""
    import gc

    loop = asyncio.get_running_loop()
    unhandled: list[str] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(str(context.get("message"))))
    ended = asyncio.Event()

    async def question_then_end() -> AsyncIterator[str]:
        yield "정말요?"
        await ended.wait()

    try:
        reply = Reply(SimulatedTTS(latency=0.0), ListSink(), _config(closing_run_wait_s=5.0), Timeline())
        task = asyncio.create_task(reply.run(question_then_end()))
        for _ in range(5):
            await asyncio.sleep(0)  # the reply now waits for the chunk after "정말요?"
        ended.set()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        del task, reply
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(None)
    assert unhandled == []
