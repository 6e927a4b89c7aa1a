"""Preemptive generation: start the LLM on the STT partial while the caller pauses.

If the caller's final words are the partial's, the answer already under way is used (its buffered chunks replay,
then it streams on); otherwise it is discarded. The LLM is a shared, queued resource, so a preemptive answer is
cancelled as soon as the caller resumes speaking.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

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
