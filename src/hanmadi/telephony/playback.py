"""One model of Twilio's outbound playback buffer, shared by the call, the simulated caller and the metrics.

Audio plays in real time from when it arrives, or from when the audio queued before it ends, whichever is later.
A ``mark`` is due once playback reaches it. A ``clear`` drops everything not yet played: the audio being played is
cut at that instant, later audio never plays, every pending mark is echoed at once, and the buffer is empty — the
next audio plays from when it arrives, not after the audio that was cleared.

Times are plain seconds on whatever clock the owner uses (``time.monotonic()``, a test's fake clock, seconds
from the start of a reply); the model never reads a clock itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass


@dataclass
class Piece:
    """One piece of audio on the playback timeline; ``played_s`` shrinks if a clear cuts it."""

    key: Hashable
    arrived_s: float
    start_s: float
    duration_s: float
    played_s: float

    @property
    def end_s(self) -> float:
        """When this piece stops playing (its start plus what of it plays)."""
        return self.start_s + self.played_s

    def heard_s(self, now: float) -> float:
        """Seconds of this piece played by ``now``."""
        return max(0.0, min(self.played_s, now - self.start_s))


@dataclass
class PendingMark:
    """A mark queued behind audio: ``due_s`` is when playback reaches it."""

    name: str
    key: Hashable
    received_s: float
    due_s: float


class PlaybackClock:
    """Twilio's outbound buffer: pieces of audio, marks, and a ``clear`` that truncates the queue."""

    def __init__(self) -> None:
        self.pieces: list[Piece] = []
        self.pending: deque[PendingMark] = deque()
        self.end_s = 0.0  # when everything queued so far has played
        self.last_arrival_s = 0.0

    def add_audio(self, now: float, duration_s: float, key: Hashable = None) -> Piece:
        """Audio arrives at ``now``; it plays after what is queued. Returns its place on the timeline."""
        start = max(now, self.end_s)
        piece = Piece(key, now, start, duration_s, duration_s)
        self.pieces.append(piece)
        self.end_s = start + duration_s
        self.last_arrival_s = now
        return piece

    def add_mark(self, now: float, name: str, key: Hashable = None) -> PendingMark:
        """A mark arrives: it is due when the audio queued before it has played."""
        mark = PendingMark(name, key, now, max(now, self.end_s))
        self.pending.append(mark)
        return mark

    def next_due_s(self) -> float | None:
        """When the next pending mark is due (None without one)."""
        return self.pending[0].due_s if self.pending else None

    def pop_due(self, now: float) -> list[PendingMark]:
        """The marks playback has reached by ``now``, in order."""
        due: list[PendingMark] = []
        while self.pending and self.pending[0].due_s <= now:
            due.append(self.pending.popleft())
        return due

    def clear(self, now: float) -> list[PendingMark]:
        """Drop what has not played by ``now``; return every pending mark (Twilio echoes them all at once)."""
        for piece in reversed(self.pieces):
            if piece.end_s <= now:
                break
            piece.played_s = max(0.0, min(piece.played_s, now - piece.start_s))
        self.end_s = min(self.end_s, now)
        cleared = list(self.pending)
        self.pending.clear()
        return cleared

    def playing(self, now: float) -> bool:
        """Audio is still queued or playing at ``now``."""
        return self.end_s > now

    def quiet_since_s(self) -> float:
        """When the line last went quiet: the later of the last arrival and the end of playback."""
        return max(self.last_arrival_s, self.end_s)

    def heard_s(self, key: Hashable, now: float) -> float:
        """Seconds of the audio sent under ``key`` that have played by ``now``."""
        return sum(p.heard_s(now) for p in self.pieces if p.key == key)

    def first_start_s(self, key: Hashable) -> float | None:
        """When the audio sent under ``key`` started playing (None if none was sent)."""
        return next((p.start_s for p in self.pieces if p.key == key), None)


@dataclass(frozen=True)
class Playback:
    """A reply's playback as the caller hears it: when it ends and how much silence it holds in the middle."""

    end_s: float | None
    gap_s: float


def playback_of(arrivals: Iterable[tuple[float, float]]) -> Playback:
    """Play ``(arrival time, seconds of audio)`` pieces through a fresh clock: its end and inner silence."""
    clock = PlaybackClock()
    gap = 0.0
    for arrival, audio_s in arrivals:
        before = clock.end_s
        piece = clock.add_audio(arrival, audio_s)
        if clock.pieces[0] is not piece:
            gap += piece.start_s - before
    return Playback(clock.end_s if clock.pieces else None, gap)
