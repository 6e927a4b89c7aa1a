"""The knowledge file, Korean-aware retrieval, the fact guard, reloading."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from pathlib import Path

import pytest

from hanmadi.bench.knowledge import default_set_path, load_set, retrieval
from hanmadi.config import Settings
from hanmadi.knowledge import (
    FactGuard,
    Knowledge,
    KnowledgeError,
    KnowledgeIndex,
    KnowledgeSource,
    decode_knowledge,
    example_knowledge_path,
    load_knowledge,
    numbers_in,
    topic,
)
from hanmadi.metrics import REGISTRY

EXAMPLE = example_knowledge_path()
PARKING, STUDENT, DELIVERY = 8, 9, 13


@pytest.fixture(scope="module")
def index() -> KnowledgeIndex:
    return KnowledgeIndex(load_knowledge(EXAMPLE))


def reloads(outcome: str) -> float:
    return REGISTRY.get_sample_value("hanmadi_knowledge_reloads_total", {"outcome": outcome}) or 0.0


# --- the file -----------------------------------------------------------------------------------------------


def test_the_example_file_is_valid_and_json_works_too(tmp_path: Path) -> None:
    knowledge = load_knowledge(EXAMPLE)
    assert len(knowledge.entries) >= 14 and knowledge.facts
    as_json = tmp_path / "k.json"
    as_json.write_text(
        json.dumps(
            {"entries": [{"questions": ["주차 돼요?"], "answer": "지하 주차장이 있습니다."}]}, ensure_ascii=False
        )
    )
    assert load_knowledge(as_json).entries[0].answer == "지하 주차장이 있습니다."


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("- 그냥 목록", "top level"),
        ("entries: {}", "entries: must be a list"),
        ("entries:\n  - questions: []\n    answer: 네", "entries[0].questions"),
        ("entries:\n  - questions: ['주차 돼요?']\n    answer: ''", "entries[0].answer"),
        ("entries:\n  - questions: ['주차 돼요?']\n    answer: 네\n    anwser: 오타", "entries[0]: unknown key"),
        ("facts: [3]", "facts[0]"),
        ("entries: []", "nothing to answer from"),
        ("entries: [", "not valid YAML/JSON"),
    ],
)
def test_a_bad_knowledge_file_names_what_is_wrong(text: str, where: str) -> None:
    with pytest.raises(KnowledgeError) as err:
        decode_knowledge(text, "biz.yaml")
    assert where in str(err.value) and "biz.yaml" in str(err.value)


def test_a_bad_knowledge_file_stops_the_server_at_start_up(tmp_path: Path) -> None:
    from hanmadi.server import create_app

    bad = tmp_path / "biz.yaml"
    bad.write_text("entries:\n  - questions: ['주차 돼요?']\n", encoding="utf-8")
    settings = Settings(dev=True, stt="simulated", llm="simulated", tts="simulated", knowledge_file=bad, _env_file=None)  # type: ignore[call-arg]
    with pytest.raises(RuntimeError, match=r"HANMADI_KNOWLEDGE_FILE: .*entries\[0\]\.answer"):
        create_app(settings, use_recorder=False)


def test_the_server_loads_the_knowledge_file() -> None:
    from hanmadi.server import create_app

    settings = Settings(
        dev=True, stt="simulated", llm="simulated", tts="simulated", knowledge_file=EXAMPLE, _env_file=None
    )  # type: ignore[call-arg]
    state = create_app(settings, use_recorder=False).state.hanmadi
    assert state.knowledge is not None and state.knowledge.path == EXAMPLE


# --- retrieval ----------------------------------------------------------------------------------------------


def test_topic_drops_particles_endings_and_spaces() -> None:
    assert topic("주차는 가능한가요?") == topic("주차 되나요") == topic("주차돼요") == "주차"
    assert topic("저기요 혹시 학생 할인은 있나요?") == "학생할인"


@pytest.mark.parametrize(
    ("query", "entry"),
    [
        ("주차되나요", PARKING),  # no spaces
        ("주 차 는 가 능 한 가 요", PARKING),  # spaces everywhere
        ("주차장 있어?", PARKING),  # casual ending
        ("주자 가능한가요", PARKING),  # STT: 차 → 자
        ("학생활인 돼요?", STUDENT),  # STT: 할 → 활
        ("배달시킬수있어요", DELIVERY),
        ("여기 어딘데 배달 돼요?", DELIVERY),
    ],
)
def test_retrieval_survives_spacing_particles_endings_and_mishearing(
    index: KnowledgeIndex, query: str, entry: int
) -> None:
    best = index.search(query, 3)[0]
    assert (best.kind, best.index) == ("entry", entry), index.search(query, 3)


def test_scores_are_ranked_confidences(index: KnowledgeIndex) -> None:
    hits = index.search("주차 가능한가요?", 3)
    assert len(hits) == 3
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(0 <= h.score <= 1.0001 for h in hits)
    assert hits[0].score > 0.9  # asked the way the file asks it
    assert index.search("내일 비 온대요?", 1)[0].score < 0.1  # nothing about the weather


def test_retrieval_accuracy_over_the_shipped_paraphrases() -> None:
    paraphrases = load_set(default_set_path())
    cases = [(p, item["entry"]) for item in paraphrases["items"] for p in item["paraphrases"]]
    assert len(cases) >= 100
    result = retrieval(KnowledgeSource.from_file(EXAMPLE), cases, 0.1)
    assert result["top1_accuracy"] >= 0.9, result["misses"]


# --- the guard ----------------------------------------------------------------------------------------------


def test_numbers_are_read_with_their_counter_in_digits_and_in_words() -> None:
    assert numbers_in("2시간 무료, 그 뒤 30분마다 1,000원") == {(2, "시간"), (30, "분"), (1000, "원")}
    assert numbers_in("두 시간 무료, 삼십 분마다 천 원") == {(2, "시간"), (30, "분"), (1000, "원")}
    assert numbers_in("만 오천 원부터, 10% 할인, 3km") == {(15000, "원"), (10, "%"), (3, "km")}
    assert numbers_in("오시면 이분께 말씀하세요") == set()  # words, not numbers


def test_the_guard_flags_numbers_and_places_the_knowledge_does_not_have() -> None:
    guard = FactGuard(load_knowledge(EXAMPLE))
    assert guard.unsupported("식사하시면 두 시간 무료입니다.") == []
    assert guard.unsupported("역삼역 3번 출구로 나오세요.") == []
    assert guard.unsupported("직원이 10명 이상이면 됩니다.") == ["10명"]  # 10 is in the file, but as 10%
    assert guard.unsupported("강남역에서 가까워요.") == ["강남역"]
    assert guard.unsupported("일곱 시에 두 명 자리 있어요.", "일곱 시에 두 명 예약") == []  # the caller's words
    assert guard.unsupported("10% 할인됩니다.", from_knowledge=False) == ["10%"]


# --- reloading ----------------------------------------------------------------------------------------------

ONE = "entries:\n  - questions: ['주차 돼요?']\n    answer: 지하 주차장이 있습니다.\n"
TWO = ONE + "  - questions: ['포장 돼요?']\n    answer: 포장 됩니다.\n"


def test_a_reload_takes_a_good_file_and_keeps_the_old_knowledge_on_a_bad_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "biz.yaml"
    path.write_text(ONE, encoding="utf-8")
    source = KnowledgeSource.from_file(path)
    ok, bad = reloads("ok"), reloads("error")
    path.write_text(TWO, encoding="utf-8")
    assert source.reload() is True
    assert len(source.current.knowledge.entries) == 2 and reloads("ok") == ok + 1
    assert source.reload() is False  # unchanged
    path.write_text("entries:\n  - questions: ['포장 돼요?']\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, "hanmadi.knowledge"):
        assert source.reload() is False
    assert len(source.current.knowledge.entries) == 2  # the old knowledge still answers
    assert reloads("error") == bad + 1
    assert "keeping the previous knowledge" in caplog.text and "entries[0].answer" in caplog.text


async def wait_for(predicate: object, what: str) -> None:
    for _ in range(2000):
        if callable(predicate) and predicate():
            return
        await asyncio.sleep(0.005)
    raise AssertionError(f"never happened: {what}")


async def test_the_file_is_reloaded_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "biz.yaml"
    path.write_text(ONE, encoding="utf-8")
    source = KnowledgeSource.from_file(path)
    async with source.watching(poll_s=0.01):
        path.write_text(TWO, encoding="utf-8")
        await wait_for(lambda: len(source.current.knowledge.entries) == 2, "the change was picked up")
    assert source.current.index.search("포장 되나요", 1)[0].index == 1


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
async def test_sighup_reloads_the_file(tmp_path: Path) -> None:
    path = tmp_path / "biz.yaml"
    path.write_text(ONE, encoding="utf-8")
    source = KnowledgeSource.from_file(path)
    async with source.watching(poll_s=0):  # no polling: only the signal can reload
        assert source.sighup_installed
        path.write_text(TWO, encoding="utf-8")
        os.kill(os.getpid(), signal.SIGHUP)
        await wait_for(lambda: len(source.current.knowledge.entries) == 2, "SIGHUP reloaded the file")
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL  # the handler left with the watcher


def test_a_fixed_knowledge_needs_no_file() -> None:
    source = KnowledgeSource.from_knowledge(Knowledge(entries=(), facts=("가게 이름은 한마디입니다.",)))
    assert source.reload() is False
    assert source.current.index.search("가게 이름이 뭐예요", 1)[0].kind == "fact"
