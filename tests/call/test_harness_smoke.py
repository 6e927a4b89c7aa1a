"""The harness itself: a whole call — greeting, two turns, marks — in memory."""

from __future__ import annotations

from call_harness import CallHarness

from hanmadi.providers.simulated import ScriptedLLM, SimulatedSTT


async def test_a_whole_call_runs_in_memory() -> None:
    stt = SimulatedSTT(["예약하고 싶어요", "내일 세 시요"])
    async with CallHarness(
        stt=stt, llm=ScriptedLLM(script=[(0.0, "네, 알겠습니다. 도와드릴게요.")]), greeting="안녕하세요."
    ) as h:
        await h.reply_done(0)
        h.play()
        first = await h.say()
        await h.reply_done(first)
        h.play()
        second = await h.say()
        await h.reply_done(second)
        h.play()
        assert [t.heard_text for t in h.call.turns] == ["", "예약하고 싶어요", "내일 세 시요"]
        assert h.transport.marks()[0] == "t0s0"
        assert not h.call.bot_speaking()
    assert h.call.end_reason == "hangup"
