"""Preemptive generation: start the LLM on the STT partial while the caller pauses.

If the caller's final words are the partial's, the answer already under way is used (its buffered chunks replay,
then it streams on); otherwise it is discarded. The LLM is a shared, queued resource, so a preemptive answer is
cancelled as soon as the caller resumes speaking — and once taken, the reply owns it: closing the replay (the
reply ended or was cut by a barge-in) stops the LLM stream too.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from typing import Any

from hanmadi import metrics
from hanmadi.providers.base import LLM, Message

log = logging.getLogger("hanmadi.preemptive")

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None]"]

_NOT_WORDS = re.compile(r"[\s.,!?~…]+")


def same_words(a: str, b: str) -> bool:
    """The two transcripts say the same thing (spacing and punctuation aside)."""
    return _NOT_WORDS.sub("", a) == _NOT_WORDS.sub("", b) != ""


class PreemptiveAnswer:
    """An LLM answer started early; ``pump()`` runs it into a buffer, ``replay()`` streams it to the engine."""

    def __init__(self, text: str, stream: AsyncIterator[str]) -> None:
        self.text = text
        self._stream = stream
        self._chunks: list[str] = []
        self._finished = False
        self._error: BaseException | None = None
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self, spawn: Spawn) -> None:
        """Run :meth:`pump` as a task started by ``spawn`` (the call's: it never outlives the call)."""
        self._task = spawn(self.pump(), "preemptive")

    @property
    def generating(self) -> bool:
        """The LLM stream is still being consumed."""
        return self._task is not None and not self._task.done()

    def cancel(self) -> None:
        """Stop generating (the caller resumed, the words differ, or the reply that took it is over)."""
        if self._task is not None and not self._task.done():
            self._task.cancel()

    async def pump(self) -> None:
        """Consume the LLM stream into the buffer (run as a task owned by the call)."""
        try:
            async for chunk in self._stream:
                self._chunks.append(chunk)
                self._changed.set()
        except Exception as exc:  # handed to the engine on replay, which speaks the fallback
            self._error = exc
        finally:
            self._finished = True
            self._changed.set()

    async def replay(self) -> AsyncIterator[str]:
        """What was generated so far, then the rest as it comes; the LLM's error, if any, at its place."""
        sent = 0
        try:
            while True:
                while sent < len(self._chunks):
                    yield self._chunks[sent]
                    sent += 1
                if self._finished:
                    if self._error is not None:
                        raise self._error
                    return
                self._changed.clear()
                await self._changed.wait()
        finally:
            self.cancel()  # the reply is over (done, failed or cut): nothing more to generate


class Preemption:
    """A call's preemptive answering: start at a pause, drop when the caller resumes, take when the words match."""

    def __init__(self, llm: LLM, pause_ms: int, spawn: Spawn, call_sid: str = "") -> None:
        self.llm = llm
        self.pause_ms = pause_ms
        self._spawn = spawn
        self._call_sid = call_sid
        self.answer: PreemptiveAnswer | None = None

    def on_audio(
        self,
        *,
        silence_ms: int,
        speaking: bool,
        partial: str,
        allowed: bool,
        messages: Callable[[str], Sequence[Message]],
    ) -> None:
        """Called for each caller frame while the caller speaks: start, or drop when the caller resumes."""
        if self.answer is not None:
            if silence_ms == 0:
                self.drop("resumed")
            return
        if silence_ms >= self.pause_ms and speaking and partial and allowed:
            self.answer = PreemptiveAnswer(partial, self.llm.stream(messages(partial)))
            self.answer.start(self._spawn)
            log.info("call %s: preemptive answer started on %r", self._call_sid, partial)

    def drop(self, outcome: str) -> None:
        """Discard the answer under way, if any."""
        if self.answer is not None:
            self.answer.cancel()
            self.answer = None
            metrics.PREEMPTIVE.labels(outcome=outcome).inc()

    def take(self, text: str, allowed: bool = True) -> PreemptiveAnswer | None:
        """The answer if the caller's final words ``text`` confirm it: the reply then owns it (``replay()`` is its
        LLM stream; ``cancel()`` it when the reply ends)."""
        answer = self.answer
        if answer is None:
            return None
        if not allowed or not same_words(answer.text, text):
            self.drop("miss")
            return None
        self.answer = None
        metrics.PREEMPTIVE.labels(outcome="hit").inc()
        return answer
