"""The agent grounded in a knowledge file: what each kind of LLM is given, and what a base model may say."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence

import pytest

from hanmadi.agent import (
    GROUNDING_RULES,
    HEDGE,
    UNKNOWN_REPLY,
    UNKNOWN_REPLY_TRANSFER,
    Agent,
    grounding_config,
)
from hanmadi.config import Settings
from hanmadi.knowledge import KnowledgeSource, example_knowledge_path
from hanmadi.metrics import REGISTRY
from hanmadi.providers.base import Message
from hanmadi.providers.local.llama_llm import REFERENCE, build_prompt, reference_lines

PARKING = 8
PARKING_ANSWER = "건물 지하 주차장을 이용하실 수 있고, 식사하시면 2시간 무료입니다. 그 뒤로는 30분마다 1,000원입니다."


class Model:
    """An LLM answering every turn with ``reply`` (in two chunks); remembers what it was given."""

    def __init__(self, reply: str, *, base_model: bool = False) -> None:
        self.name = "scripted"
        self.reply = reply
        self.base_model = base_model
        self.prompts: list[list[Message]] = []

    async def stream(self, messages: Sequence[Message]) -> AsyncIterator[str]:
        self.prompts.append(list(messages))
        half = len(self.reply) // 2
        yield self.reply[:half]
        yield self.reply[half:]


@pytest.fixture(scope="module")
def source() -> KnowledgeSource:
    return KnowledgeSource.from_file(example_knowledge_path())


def settings(**overrides: object) -> Settings:
    return Settings(_env_file=None, **overrides)  # type: ignore[arg-type]


def agent(source: KnowledgeSource, **overrides: object) -> Agent:
    return Agent("지침", knowledge=grounding_config(settings(**overrides), source))


async def said(agent: Agent, llm: Model, text: str) -> tuple[str, str, list[int]]:
    answer = agent.reply(llm, agent.user_message(text))  # type: ignore[arg-type]
    reply = "".join([c async for c in answer.chunks])
    return reply, answer.grounding.mode, [h.index for h in answer.grounding.hits]


def turns(mode: str) -> float:
    return REGISTRY.get_sample_value("hanmadi_knowledge_turns_total", {"mode": mode}) or 0.0


async def test_a_vendor_llm_gets_the_entries_and_facts_as_the_only_source_of_facts(source: KnowledgeSource) -> None:
    llm = Model("지하 주차장이 있어요.")
    reply, mode, entries = await said(agent(source), llm, "주차 되나요?")
    assert reply == "지하 주차장이 있어요." and mode == "answer" and entries[0] == PARKING
    system = [m.content for m in llm.prompts[0] if m.role == "system"]
    assert system[0] == "지침"
    assert GROUNDING_RULES in system[1] and f"- {PARKING_ANSWER}" in system[1]
    assert "- 가게 이름은 한마디 키친입니다." in system[1]  # every fact, always


async def test_a_base_model_speaks_a_confident_entry_itself(source: KnowledgeSource) -> None:
    llm = Model("네, 주차 됩니다.", base_model=True)
    before = turns("answer")
    reply, mode, entries = await said(agent(source), llm, "주차는 가능한가요")
    assert (reply, mode, entries[0]) == (PARKING_ANSWER, "answer", PARKING)
    assert llm.prompts == []  # the model was not asked
    assert turns("answer") == before + 1


async def test_an_unanswerable_question_gets_the_honest_line(source: KnowledgeSource) -> None:
    llm = Model("네, 셔틀버스는 10분마다 있어요.", base_model=True)
    reply, mode, entries = await said(agent(source), llm, "셔틀버스 운행하나요?")
    assert (reply, mode, entries) == (UNKNOWN_REPLY, "unknown", [])
    reply, _, _ = await said(agent(source, transfer_numbers=["+8225550123"]), llm, "셔틀버스 운행하나요?")
    assert reply == UNKNOWN_REPLY_TRANSFER and "연결" in reply
    reply, _, _ = await said(agent(source, knowledge_unknown_reply="직원에게 물어볼게요."), llm, "셔틀버스 있어요?")
    assert reply == "직원에게 물어볼게요."


async def test_a_base_model_completion_sees_the_best_entry_as_its_reference(source: KnowledgeSource) -> None:
    llm = Model("네, 버섯 들깨 리조또와 두부 샐러드가 있습니다.", base_model=True)
    reply, mode, _ = await said(agent(source), llm, "비건 메뉴 있어요?")
    assert mode == "grounded" and reply == "네, 버섯 들깨 리조또와 두부 샐러드가 있습니다."
    reference = reference_lines(llm.prompts[0])
    assert len(reference) == 1 and "리조또" in reference[0]
    prompt = build_prompt("지침", [m for m in llm.prompts[0] if m.role != "system"], reference)
    assert prompt.split("\n")[-3:] == [f"{REFERENCE} {reference[0]}", "고객: 비건 메뉴 있어요?", "상담원:"]


@pytest.mark.parametrize(
    "invented",
    [
        "네, 비건 메뉴는 12,000원입니다.",  # a price the file does not have
        "네, 강남역 근처 매장에 있어요.",  # a place the file does not have
        "네, 그렇습니다.",  # a claim with nothing of the reference in it
    ],
)
async def test_a_base_model_never_says_what_the_knowledge_does_not(source: KnowledgeSource, invented: str) -> None:
    reply, mode, _ = await said(agent(source), Model(invented, base_model=True), "비건 메뉴 있어요?")
    assert mode == "grounded"
    assert reply.startswith(HEDGE) and "리조또" in reply  # the best entry's own words, hedged


async def test_a_base_model_says_no_number_without_knowledge_behind_it(source: KnowledgeSource) -> None:
    # a statement that matches nothing: the model may answer, but not with the knowledge's numbers
    reply, mode, _ = await said(agent(source), Model("10% 할인해 드립니다.", base_model=True), "체인점 내고 싶은데요")
    assert (reply, mode) == (UNKNOWN_REPLY, "open")
    reply, _, _ = await said(agent(source), Model("감사합니다. 좋은 하루 보내세요.", base_model=True), "네 감사합니다")
    assert reply == "감사합니다. 좋은 하루 보내세요."


async def test_the_first_bad_sentence_ends_the_reply(source: KnowledgeSource) -> None:
    llm = Model("버섯 들깨 리조또와 두부 샐러드가 있습니다. 가격은 9,900원입니다. 맛있어요.", base_model=True)
    reply, _, _ = await said(agent(source), llm, "비건 메뉴 있어요?")
    assert reply == "버섯 들깨 리조또와 두부 샐러드가 있습니다."


async def test_without_a_knowledge_file_nothing_changes() -> None:
    plain = Agent("지침")
    llm = Model("네.", base_model=True)
    answer = plain.reply(llm, plain.user_message("주차 되나요?"))  # type: ignore[arg-type]
    assert "".join([c async for c in answer.chunks]) == "네."
    assert answer.grounding.mode == "none" and [m.role for m in llm.prompts[0]] == ["system", "user"]
