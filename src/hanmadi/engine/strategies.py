"""The seed's three ways to turn a streamed answer into speech, behind one interface (for comparison).

A strategy is an async function ``(turn, chunks) -> None`` combining the building blocks of a :class:`Turn`
(implemented by :class:`hanmadi.engine.scheduler.Reply`): listen to the LLM, admit a TTS job into the window,
synthesize a sentence, send what is ready in order.

- ``realtime`` (default, the seed's design): each sentence's TTS starts the moment it is generated, in parallel
  within the window; audio goes out in order as soon as the head sentence is ready.
- ``two_stage``: wait for the whole answer, then every TTS in parallel (within the same ``max_parallel_tts``
  window — the seed's version has no window), sent in order as the head is ready.
- ``sequential``: wait for the whole answer, then TTS and send one sentence after the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from typing import Protocol


class Turn(Protocol):
    """The building blocks a strategy combines (see :class:`hanmadi.engine.scheduler.Reply`)."""

    @property
    def sentence_count(self) -> int: ...

    async def listen(self, chunks: AsyncIterator[str], on_sentence: Callable[[int], None] | None = None) -> int: ...

    async def admit(self) -> AbstractContextManager[None]: ...

    async def synthesize(self, index: int, slot: AbstractContextManager[None]) -> None: ...

    async def send_available(self) -> None: ...

    async def send_all(self) -> None: ...


class Strategy(Protocol):
    """How a turn's sentences are scheduled."""

    async def __call__(self, turn: Turn, chunks: AsyncIterator[str], /) -> None: ...


async def realtime(turn: Turn, chunks: AsyncIterator[str]) -> None:
    """TTS for each sentence as soon as it is generated; the LLM stream is never blocked by the window."""
    generated: asyncio.Queue[int | None] = asyncio.Queue()

    async def start_jobs(tg: asyncio.TaskGroup) -> None:
        # one starter keeps jobs in sentence order, so the head sentence always has its place in the window
        while (index := await generated.get()) is not None:
            slot = await turn.admit()
            tg.create_task(turn.synthesize(index, slot), name=f"hanmadi-tts-{index}")

    async with asyncio.TaskGroup() as tg:
        tg.create_task(turn.send_all(), name="hanmadi-send")
        tg.create_task(start_jobs(tg), name="hanmadi-tts-starter")
        await turn.listen(chunks, generated.put_nowait)
        generated.put_nowait(None)


async def two_stage(turn: Turn, chunks: AsyncIterator[str]) -> None:
    """The whole answer first, then all TTS in parallel (within the window), sent in order."""
    await turn.listen(chunks)
    async with asyncio.TaskGroup() as tg:
        tg.create_task(turn.send_all(), name="hanmadi-send")
        for index in range(turn.sentence_count):
            slot = await turn.admit()
            tg.create_task(turn.synthesize(index, slot), name=f"hanmadi-tts-{index}")


async def sequential(turn: Turn, chunks: AsyncIterator[str]) -> None:
    """The whole answer first, then TTS and send sentence by sentence."""
    await turn.listen(chunks)
    for index in range(turn.sentence_count):
        await turn.synthesize(index, await turn.admit())
        await turn.send_available()


STRATEGIES: dict[str, Strategy] = {"realtime": realtime, "two_stage": two_stage, "sequential": sequential}


def get_strategy(name: str) -> Strategy:
    """The strategy called ``name``; ValueError naming the known ones otherwise."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}") from None
