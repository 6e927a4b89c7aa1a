"""The reorder buffer: audio by sentence index, released strictly in index order (the seed's ``completed_audio``).

Parallel TTS jobs finish in any order; the caller must hear sentence 0, then 1, then 2. Jobs ``put`` chunks and
then ``finish`` or ``fail`` their index; the single sender ``take``s what is ready at the head and, when nothing
is, waits on :meth:`wait_ready`. One ``asyncio.Condition`` carries every change: any number of waiters, no lost
wake-ups (each waiter re-checks its own predicate under the lock).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from hanmadi.providers.base import AudioChunk

SlotState = Literal["open", "done", "failed"]


@dataclass
class _Slot:
    chunks: deque[AudioChunk] = field(default_factory=deque)
    state: SlotState = "open"


class ReorderBuffer:
    """Audio by sentence index, released strictly in index order. A failed index releases nothing more and never
    blocks later ones; ``buffered_audio_s`` is the audio waiting to be sent (the engine bounds it)."""

    def __init__(self) -> None:
        self.completed_audio: dict[int, _Slot] = {}
        self.next_send_index = 0
        self.total: int | None = None
        self.buffered_audio_s = 0.0
        self._changed = asyncio.Condition()

    def _slot(self, index: int) -> _Slot:
        return self.completed_audio.setdefault(index, _Slot())

    async def put(self, index: int, chunk: AudioChunk) -> None:
        """A chunk of sentence ``index`` is ready."""
        async with self._changed:
            self._slot(index).chunks.append(chunk)
            self.buffered_audio_s += chunk.duration_s
            self._changed.notify_all()

    async def finish(self, index: int) -> None:
        """Sentence ``index`` has all its audio."""
        async with self._changed:
            self._slot(index).state = "done"
            self._changed.notify_all()

    async def fail(self, index: int) -> None:
        """Sentence ``index`` will not be (completely) spoken: drop its unsent audio, let the next one go."""
        async with self._changed:
            slot = self._slot(index)
            slot.state = "failed"
            self._free(sum(c.duration_s for c in slot.chunks))
            slot.chunks.clear()
            self._changed.notify_all()

    async def close(self, total: int) -> None:
        """No sentence at or beyond ``total`` will come."""
        async with self._changed:
            self.total = total
            self._changed.notify_all()

    @property
    def complete(self) -> bool:
        """Every sentence has been released (sent or skipped)."""
        return self.total is not None and self.next_send_index >= self.total

    def ready(self) -> bool:
        """:meth:`take` has something to give, or everything has been released."""
        if self.complete:
            return True
        slot = self.completed_audio.get(self.next_send_index)
        return slot is not None and (bool(slot.chunks) or slot.state != "open")

    async def take(self) -> tuple[int, AudioChunk | None, SlotState] | None:
        """The next thing to send: ``(index, chunk, state)`` for a chunk at the head, ``(index, None, state)``
        when the head sentence is over (``done`` or ``failed``; the head then moves on), or None if the head is
        not ready."""
        async with self._changed:
            if self.complete or not self.ready():
                return None
            index = self.next_send_index
            slot = self.completed_audio[index]
            if slot.chunks:
                chunk = slot.chunks.popleft()
                self._free(chunk.duration_s)
                self._changed.notify_all()
                return index, chunk, slot.state
            del self.completed_audio[index]
            self.next_send_index += 1
            return index, None, slot.state

    async def wait_ready(self) -> None:
        """Wait until :meth:`take` has something to give (or everything has been released)."""
        async with self._changed:
            await self._changed.wait_for(self.ready)

    async def wait_for_space(self, limit_s: float) -> None:
        """Wait until less than ``limit_s`` seconds of audio wait to be sent."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.buffered_audio_s < limit_s)

    def _free(self, seconds: float) -> None:
        left = self.buffered_audio_s - seconds
        self.buffered_audio_s = left if left > 1e-9 else 0.0  # no float dust once the buffer is empty
