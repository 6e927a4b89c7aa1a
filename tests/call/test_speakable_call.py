"""A call speaks the speakable text; the turn record, the timeline and the agent's history keep the written one."""

from __future__ import annotations

from typing import Any

from call_harness import AnswersLLM, CallHarness, ListRecorder

from hanmadi.providers.simulated import SimulatedSTT, SimulatedTTS

ANSWER = "네, 내일 3시에 4명으로 예약해 드렸어요. 총 12,500원입니다."
SPOKEN = ["네, 내일 세 시에 네 명으로 예약해 드렸어요.", "총 만 이천오백 원입니다."]


async def _one_turn(speakable: bool = True) -> tuple[ListRecorder, SimulatedTTS, CallHarness]:
    records = ListRecorder()
    tts = SimulatedTTS(latency=0.0)
    stt = SimulatedSTT(["내일 세 시에 네 명 예약할게요"])
    llm = AnswersLLM(ANSWER)
    recorder: Any = records  # duck-typed like the store's Recorder
    async with CallHarness(
        stt=stt, llm=llm, tts=tts, recorder=recorder, first_clause_split=False, speakable=speakable
    ) as h:
        turn = await h.say()
        await h.reply_done(turn)
        h.play()
    return records, tts, h


async def test_the_tts_says_it_in_words_and_the_records_keep_both() -> None:
    records, tts, h = await _one_turn()
    assert tts.calls == SPOKEN
    (record,) = records.turns
    assert record.generated_text == ANSWER and record.spoken_text == ANSWER
    assert record.metrics["speech_text"] == " ".join(SPOKEN)
    assert [e["text"] for e in record.events if e["kind"] == "sentence"] == [
        "네, 내일 3시에 4명으로 예약해 드렸어요.",
        "총 12,500원입니다.",
    ]
    assert h.call.agent.history[-1].role == "assistant" and h.call.agent.history[-1].content == ANSWER


async def test_speakable_off_gives_the_tts_the_written_text() -> None:
    records, tts, _ = await _one_turn(speakable=False)
    assert tts.calls == ["네, 내일 3시에 4명으로 예약해 드렸어요.", "총 12,500원입니다."]
    assert records.turns[0].metrics["speech_text"] == ANSWER
