"""The caller's audio on its way to the STT: what the call's STT worker drains, in order, bounded.

The media handler must stay cheap (it runs for every 20 ms frame), so it only queues: PCM frames and the turn
detector's "the caller stopped speaking". The STT worker takes them in order, ``block_ms`` of audio at a time (one
wake-up of the worker and one push to the STT a block instead of a frame; an end of speech or the close first hands
over what is buffered). If the STT falls more than
``backlog_s`` behind (a stalled vendor, a starved thread), frames are dropped — counted and logged once per run —
rather than letting the call's memory grow; an end of speech is never dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

from hanmadi import metrics
from hanmadi.telephony import audio

log = logging.getLogger("hanmadi.call")


@dataclass(frozen=True)
class EndOfSpeech:
    """The caller stopped speaking: when we decided it, how long the endpointing silence was, which rule ended it."""

    t_detect: float
    endpointing_s: float
    end_rule: str = "default"  # which silence ended the turn (turn.EndRule): "final" is the Korean early end


class SttFeed:
    """A FIFO of caller audio (in blocks of ``block_ms``) and ends of speech, bounded to ``backlog_s`` of audio;
    ``None`` ends it."""

    def __init__(self, backlog_s: float, call_sid: str = "", *, block_ms: int = audio.FRAME_MS) -> None:
        self.backlog_s = backlog_s
        self._call_sid = call_sid
        self._queue: asyncio.Queue[bytes | EndOfSpeech | None] = asyncio.Queue()
        self._frames = 0  # frames accepted and not yet taken by the worker (buffered or queued)
        self._max_frames = max(1, round(backlog_s * 1000 / audio.FRAME_MS))
        self._dropping = False
        self._block_frames = max(1, block_ms // audio.FRAME_MS)
        self._block = bytearray()
        self._in_block = 0
        self._queued_blocks: deque[int] = deque()  # frames in each queued block, oldest first

    def audio(self, pcm: bytes) -> None:
        """Queue one frame of caller PCM, or drop it if the STT is ``backlog_s`` behind."""
        if self._frames >= self._max_frames:
            metrics.STT_FRAMES_DROPPED.inc()
            if not self._dropping:
                self._dropping = True
                log.warning("call %s: STT is %.0f s behind, dropping caller audio", self._call_sid, self.backlog_s)
            return
        self._dropping = False
        self._frames += 1
        self._block += pcm
        self._in_block += 1
        if self._in_block >= self._block_frames:
            self._hand_over()

    def _hand_over(self) -> None:
        if self._in_block:
            self._queued_blocks.append(self._in_block)
            self._queue.put_nowait(bytes(self._block))
            self._block.clear()
            self._in_block = 0

    def end_of_speech(self, end: EndOfSpeech) -> None:
        """The caller stopped speaking (never dropped): the audio before it goes first."""
        self._hand_over()
        self._queue.put_nowait(end)

    def close(self) -> None:
        """No more input: :meth:`get` returns None once the queue (and the last block) is drained."""
        self._hand_over()
        self._queue.put_nowait(None)

    @property
    def queued(self) -> int:
        """Blocks of audio handed over and not yet taken by the STT worker."""
        return len(self._queued_blocks)

    async def get(self) -> bytes | EndOfSpeech | None:
        """The next block of audio or end of speech, in order; None when closed."""
        item = await self._queue.get()
        if isinstance(item, bytes):
            self._frames -= self._queued_blocks.popleft()
        return item
