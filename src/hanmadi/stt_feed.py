"""The caller's audio on its way to the STT: what the call's STT worker drains, in order, bounded.

The media handler must stay cheap (it runs for every 20 ms frame), so it only queues: PCM frames and the turn
detector's "the caller stopped speaking". The STT worker takes them in order. If the STT falls more than
``backlog_s`` behind (a stalled vendor, a starved thread), frames are dropped — counted and logged once per run —
rather than letting the call's memory grow; an end of speech is never dropped.
"""

from __future__ import annotations

import asyncio
import logging
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
    """A FIFO of caller frames and ends of speech, bounded to ``backlog_s`` of audio; ``None`` ends it."""

    def __init__(self, backlog_s: float, call_sid: str = "") -> None:
        self.backlog_s = backlog_s
        self._call_sid = call_sid
        self._queue: asyncio.Queue[bytes | EndOfSpeech | None] = asyncio.Queue()
        self._frames = 0
        self._max_frames = max(1, round(backlog_s * 1000 / audio.FRAME_MS))
        self._dropping = False

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
        self._queue.put_nowait(pcm)

    def end_of_speech(self, end: EndOfSpeech) -> None:
        """The caller stopped speaking (never dropped)."""
        self._queue.put_nowait(end)

    def close(self) -> None:
        """No more input: :meth:`get` returns None once the queue is drained."""
        self._queue.put_nowait(None)

    async def get(self) -> bytes | EndOfSpeech | None:
        """The next frame or end of speech, in order; None when closed."""
        item = await self._queue.get()
        if isinstance(item, bytes):
            self._frames -= 1
        return item
