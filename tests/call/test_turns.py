"""Turns in memory: DTMF with its turn, hang-up mid-reply, a backchannel over our reply, a failed reply kept."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from call_harness import AnswersLLM, CallHarness, ListRecorder, until

from hanmadi.providers.base import Message, ProviderError
from hanmadi.providers.simulated import SimulatedSTT, SimulatedTTS
from hanmadi.telephony import twilio as tw

LONG = "네, 안내해 드리겠습니다. " + "오늘 안내해 드릴 내용이 아주 많습니다. " * 4


async def test_dtmf_pressed_before_a_turn_is_recorded_with_it() -> None:
    recorder = ListRecorder()
    llm = AnswersLLM("네, 확인해 드릴게요.")
    async with CallHarness(stt=SimulatedSTT(["예약 확인이요"]), llm=llm, recorder=recorder) as h:  # type: ignore[arg-type]
        h.call.on_event(tw.Dtmf("MZtest", "1"))
        h.call.on_event(tw.Dtmf("MZtest", "2"))
        turn = await h.say()
        await h.reply_done(turn)
        h.play()
    assert [t.dtmf for t in recorder.turns] == ["12"]


async def test_hanging_up_mid_reply_records_what_was_heard() -> None:
    recorder = ListRecorder()
    tts = SimulatedTTS(latency=0.0, audio_s=2.0)
    async with CallHarness(stt=SimulatedSTT(["안내해 주세요"]), llm=AnswersLLM(LONG), tts=tts, recorder=recorder) as h:  # type: ignore[arg-type]
        turn = await h.say()
        await until(lambda: len(h.transport.marks()) >= 2, "two sentences sent")
        h.clock.advance(1.0)  # the caller heard half of the first sentence, then hung up
        h.call.on_event(tw.Stop("MZtest", "CAtest"))
    (record,) = recorder.turns
    assert record.index == turn
    assert record.spoken_text.endswith("…") and LONG.startswith(record.spoken_text.rstrip("…"))
    assert recorder.ends[0].end_reason == "caller_stop" and recorder.ends[0].status == "completed"
    assert not [t for t in asyncio.all_tasks() if t.get_name().endswith(":CAtest")]  # no task outlives the call


async def test_a_backchannel_over_our_reply_neither_clears_nor_starts_a_turn() -> None:
    async with CallHarness(stt=SimulatedSTT(["안내해 주세요", "네"]), llm=AnswersLLM(LONG)) as h:
        turn = await h.say()
        await h.reply_done(turn)  # sent, not yet played: we are still speaking
        h.speak(0.5)
        h.pause()
        await until(lambda: h.finalized() == 2, "the backchannel was transcribed")
        assert "clear" not in h.transport.kinds()
        assert len(h.call.turns) == 1


class FailingLLM:
    name = "failing"

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        yield "첫 문장은 나갑니다. "
        raise ProviderError("failing", "connect", "stream died")


async def test_a_reply_whose_llm_fails_is_recorded_and_kept_in_history() -> None:
    recorder = ListRecorder()
    async with CallHarness(
        stt=SimulatedSTT(["질문이요"]), llm=FailingLLM(), recorder=recorder, llm_fallback="다시 말씀해 주세요."
    ) as h:  # type: ignore[arg-type]
        turn = await h.say()
        await h.reply_done(turn)
        h.play()
        assert h.call.agent.history[-1] == Message("assistant", "첫 문장은 나갑니다. 다시 말씀해 주세요.")
    (record,) = recorder.turns
    assert record.spoken_text == "첫 문장은 나갑니다. 다시 말씀해 주세요."
    assert [e["kind"] for e in record.events].count("llm_error") == 1
