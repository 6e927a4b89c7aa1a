"""The call core under races: barge-in, clear, the playback clock, preemptive answers (reproducers p2, p3, p6, p10).

Each scenario was a bug at 0e80b46 (see ../shared/reproducers): the comment on each test says what it printed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

import pytest
from call_harness import AnswersLLM, CallHarness, until

from hanmadi.providers.base import Message
from hanmadi.providers.simulated import ScriptedLLM, SimulatedSTT, SimulatedTTS

LONG = "네, 안내해 드리겠습니다. " + "오늘 안내해 드릴 내용이 아주 많습니다. " * 4


async def test_a_late_barge_in_never_cancels_the_next_turns_answer() -> None:
    """p2: the clear send was awaited between the decision and the cancel; the cancel then hit turn 2's reply."""
    stt = SimulatedSTT(["첫 질문", "두 번째 질문이요"])
    async with CallHarness(stt=stt, llm=ScriptedLLM(script=[(0.0, LONG)])) as h:
        first = await h.say()
        await until(lambda: "media" in h.transport.kinds(), "turn 1 audio")
        h.transport.hold("clear")  # a socket slow to take the clear
        late = asyncio.create_task(h.call.barge_in(h.call.turns[first]))
        await until(lambda: "clear" in h.transport.waiting, "barge-in blocked on its clear")
        h.speak()  # the caller's next question while the clear is stuck
        h.pause()
        await until(lambda: h.finalized() == 2, "the STT worker took the end of speech")
        # let the worker go as far as it will while the clear is stuck (old code: it starts turn 2 right away)
        for _ in range(500):
            await asyncio.sleep(0)
        h.transport.release("clear")
        await late
        second = await until_turn(h, first + 1)
        await h.reply_done(second)
        report = h.call.turns[second].report
        assert report is not None and not report.cancelled
        assert report.spoken_text
        kinds = h.transport.kinds()
        assert kinds.index("clear") < kinds.index(f"mark:t{second}s0")


async def until_turn(h: CallHarness, index: int) -> int:
    await until(lambda: len(h.call.turns) > index, f"turn {index}")
    return index


async def test_no_audio_follows_the_clear() -> None:
    """p10: the clear went out before the reply was cancelled; a queued media message followed it."""
    answer = " ".join(f"{i}번째 안내 문장입니다." for i in range(40))
    tts = SimulatedTTS(latency=0.0, ttfb_s=0.0, stream_chunks=20)
    async with CallHarness(stt=SimulatedSTT(["질문"]), llm=ScriptedLLM(script=[(0.0, answer)]), tts=tts) as h:
        h.transport.drain = True
        turn = await h.say()
        await until(lambda: h.transport.kinds().count("media") >= 5, "audio flowing")
        await h.call.barge_in(h.call.turns[turn])
        kinds = h.transport.kinds()
        assert kinds[-1] == "clear"
        for _ in range(50):
            await asyncio.sleep(0)
        assert h.transport.kinds()[kinds.index("clear") + 1 :] == []


async def test_after_a_clear_the_next_reply_plays_at_once_and_is_heard() -> None:
    """p3: cleared audio kept its place in the playback model: the next reply was modelled ~20 s late and a
    second barge-in recorded nothing heard."""
    stt = SimulatedSTT(["첫 질문", "두 번째 질문"])
    tts = SimulatedTTS(latency=0.0, audio_s={"긴 답변입니다.": 20.0, "두 번째 답변의 첫 문장입니다.": 3.0})
    llm = AnswersLLM("긴 답변입니다.", "두 번째 답변의 첫 문장입니다.")
    async with CallHarness(stt=stt, llm=llm, tts=tts) as h:
        first = await h.say()
        await h.reply_done(first)  # 20 s of audio sent at once
        h.clock.advance(0.3)
        await h.call.barge_in(h.call.turns[first])
        assert h.call.playback.heard_s((first, 0), h.clock() + 5) == pytest.approx(0.3)  # and no more, ever
        second = await h.say()
        await h.reply_done(second)
        sent_at = h.clock()
        assert h.call.playback.first_start_s((second, 0)) == sent_at  # plays now, not after the cleared 20 s
        h.clock.advance(1.0)  # the caller hears one second of it, then interrupts again
        await h.call.barge_in(h.call.turns[second])
        heard = h.call.heard_reply(h.call.turns[second])
        assert heard.startswith("두 번째") and heard.endswith("…")


class GatedLLM:
    """An LLM that says one sentence, then waits for ``more`` before each further one; counts what it generated."""

    name = "gated"

    def __init__(self) -> None:
        self.more = asyncio.Event()
        self.generated = 0

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        while True:
            self.generated += 1
            yield "가나다라 마바사입니다. "
            await self.more.wait()
            self.more.clear()


async def test_a_taken_preemptive_answer_stops_generating_with_its_reply() -> None:
    """p6: once taken, the preemptive pump task was owned by nobody: after a barge-in the LLM kept generating."""
    llm = GatedLLM()
    async with CallHarness(stt=SimulatedSTT(["예약 변경할게요"]), llm=llm) as h:
        h.call.preemption.on_audio(
            silence_ms=300,
            speaking=True,
            partial="예약 변경할게요",
            allowed=True,
            messages=lambda text: [Message("user", text)],
        )
        answer = h.call.preemption.answer
        assert answer is not None and answer.generating
        turn = await h.say()
        assert h.call.turns[turn].preempt is answer  # the final words matched: the reply took it
        await until(lambda: "media" in h.transport.kinds(), "the preemptive answer is spoken")
        await h.call.barge_in(h.call.turns[turn])
        await until(lambda: not answer.generating, "the LLM stream stopped")
        generated = llm.generated
        llm.more.set()
        for _ in range(20):
            await asyncio.sleep(0)
        assert llm.generated == generated
