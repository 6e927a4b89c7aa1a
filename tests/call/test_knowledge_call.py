"""A call answering from the knowledge file: what the caller hears and what the turn record keeps."""

from __future__ import annotations

from call_harness import AnswersLLM, CallHarness, ListRecorder

from hanmadi.agent import grounding_config
from hanmadi.knowledge import KnowledgeSource, example_knowledge_path
from hanmadi.providers.simulated import SimulatedSTT


class BaseModel(AnswersLLM):
    base_model = True


async def test_the_turn_record_keeps_the_entries_that_grounded_the_answer() -> None:
    records = ListRecorder()
    llm = BaseModel("감사합니다. 좋은 하루 보내세요.")
    stt = SimulatedSTT(["주차 가능한가요", "셔틀버스 운행하나요", "네 감사합니다"])
    async with CallHarness(stt=stt, llm=llm, recorder=records) as h:  # type: ignore[arg-type]
        source = KnowledgeSource.from_file(example_knowledge_path())
        h.call.agent.knowledge = grounding_config(h.settings, source)
        for _ in range(3):
            turn = await h.say()
            await h.reply_done(turn)
            h.play()
    by_index = {t.index: t for t in records.turns}
    parking, shuttle, thanks = by_index[0], by_index[1], by_index[2]
    assert "2시간 무료" in parking.spoken_text
    assert parking.metrics["knowledge"]["mode"] == "answer" and parking.metrics["knowledge"]["grounded"] is True
    assert parking.metrics["knowledge"]["entries"][0]["index"] == 8
    assert shuttle.metrics["knowledge"] == {"mode": "unknown", "grounded": False, "entries": []}
    assert "모르겠습니다" in shuttle.spoken_text
    assert thanks.spoken_text == "감사합니다. 좋은 하루 보내세요." and llm.asked == 1  # only this turn asked the model


def test_a_call_given_the_servers_knowledge_grounds_its_agent() -> None:
    from call_harness import ListTransport, call_settings, start_event

    from hanmadi.call import CallSession
    from hanmadi.providers.simulated import ScriptedLLM, SimulatedTTS

    source = KnowledgeSource.from_file(example_knowledge_path())
    kwargs = {
        "settings": call_settings(),
        "stt": SimulatedSTT(),
        "llm": ScriptedLLM(),
        "tts": SimulatedTTS(latency=0.0),
        "transport": ListTransport(),
        "start": start_event(),
    }
    assert CallSession(**kwargs, knowledge=source).agent.knowledge is not None  # type: ignore[arg-type]
    assert CallSession(**kwargs).agent.knowledge is None  # type: ignore[arg-type]
