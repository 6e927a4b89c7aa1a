"""Preemptive answers: buffered then live replay, errors at their place, transcript comparison."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from hanmadi.preemptive import PreemptiveAnswer, same_words
from hanmadi.providers.base import ProviderError


async def slow_stream(chunks: list[str], gate: asyncio.Event, fail: bool = False) -> AsyncIterator[str]:
    for i, chunk in enumerate(chunks):
        if i == 2:
            await gate.wait()  # the rest arrives only after replay began
        yield chunk
    if fail:
        raise ProviderError("simulated", "connect", "stream died")


async def test_replay_gives_buffered_chunks_then_live_ones_in_order() -> None:
    gate = asyncio.Event()
    answer = PreemptiveAnswer("예약 확인", slow_stream(["네, ", "확인해 ", "드리겠", "습니다."], gate))
    pump = asyncio.create_task(answer.pump())
    await asyncio.sleep(0.01)
    received: list[str] = []

    async def consume() -> None:
        async for chunk in answer.replay():
            received.append(chunk)
            if len(received) == 2:
                gate.set()

    await asyncio.wait_for(consume(), 2)
    await pump
    assert received == ["네, ", "확인해 ", "드리겠", "습니다."]


async def test_llm_error_reaches_the_consumer_after_what_was_generated() -> None:
    gate = asyncio.Event()
    gate.set()
    answer = PreemptiveAnswer("x", slow_stream(["a", "b", "c"], gate, fail=True))
    await answer.pump()
    got: list[str] = []
    with pytest.raises(ProviderError):
        async for chunk in answer.replay():
            got.append(chunk)
    assert got == ["a", "b", "c"]


def test_same_words_ignores_spacing_and_punctuation_only() -> None:
    assert same_words("예약 확인해 주세요", "예약 확인해 주세요.")
    assert same_words("예약  확인해, 주세요", "예약 확인해 주세요")
    assert not same_words("예약 확인해", "예약 확인해 주세요")
    assert not same_words("", "")


async def test_stall_guard_turns_a_silent_llm_into_a_provider_error() -> None:
    from hanmadi.providers.base import stall_guard

    async def stalls() -> AsyncIterator[str]:
        yield "네, "
        await asyncio.sleep(10)
        yield "never"

    got: list[str] = []
    with pytest.raises(ProviderError) as err:
        async for chunk in stall_guard(stalls(), 0.05, "simulated"):
            got.append(chunk)
    assert got == ["네, "]
    assert err.value.reason == "stalled"
