"""Plain records that flow into and out of the store.

The call code builds the input records (``CallStart``, ``TurnRecord``, ``CallEnd``) and hands them to
the ``Recorder``; it never touches SQLAlchemy. The read side (``CallSummary``, ``CallDetail``…) is what the
repository returns to the API and the pages. Phone numbers never reach the database unmasked: see ``mask_number``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypedDict

from hanmadi.engine.scheduler import TurnReport
from hanmadi.engine.timeline import TimelineEvent, audio_arrivals
from hanmadi.telephony.playback import playback_of

CallStatus = Literal["active", "completed", "failed"]
CALL_STATUSES: tuple[CallStatus, ...] = ("active", "completed", "failed")

# Given to calls a crashed server left ``active`` (see ``repository.mark_interrupted_calls``).
INTERRUPTED_STATUS: CallStatus = "failed"
INTERRUPTED_REASON = "server_restart"


# --- input: what the call code records ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallStart:
    """A call was answered. Numbers are given in full; the store masks them before writing."""

    call_sid: str
    stream_sid: str
    from_number: str
    to_number: str
    started_at: datetime
    providers: dict[str, str]  # {"stt": …, "llm": …, "tts": …}
    direction: str = "inbound"  # or "outbound" (placed by POST /api/calls or hanmadi dial)


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnFacts:
    """What is stored of every turn, written and read alike (``TurnRecord`` in, ``TurnDetail`` out).

    ``metrics`` is the engine's per-turn metrics dict plus the call's own figures, stored as JSON (non-finite floats
    become null); ``tool_calls`` each tool call of the turn: name, arguments, status, duration_s, t_start, filler
    (see ``tools.ToolCallRecord``).
    """

    index: int
    started_at: datetime
    ended_at: datetime
    heard_text: str
    generated_text: str
    spoken_text: str
    barge_in: bool
    dtmf: str
    first_audio_s: float | None
    voice_to_voice_s: float | None
    total_s: float | None
    metrics: dict[str, Any]
    tool_calls: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnRecord(TurnFacts):
    """One finished turn: written (and committed) as soon as the turn ends.

    ``events`` is the engine's timeline for the turn; each event has the keys ``t``, ``kind``, ``index``
    (sentence index or None), ``text``, ``duration_s``, ``audio_s`` and ``reason``.
    """

    call_sid: str
    events: list[dict[str, Any]]


def stored_events(events: Iterable[TimelineEvent]) -> list[dict[str, Any]]:
    """The part of a turn's timeline worth keeping: every event but per-chunk sends, of which only each
    sentence's first is kept (it dates the sentence's first audio)."""
    kept: list[dict[str, Any]] = []
    first_chunk_seen: set[int | None] = set()
    for event in events:
        if event.kind == "chunk_sent":
            if event.index in first_chunk_seen:
                continue
            first_chunk_seen.add(event.index)
        kept.append(event.to_dict())
    return kept


def turn_record(
    call_sid: str,
    index: int,
    report: TurnReport,
    *,
    started_at: datetime,
    heard_text: str,
    spoken_text: str,
    barge_in: bool,
    dtmf: str,
    endpointing_s: float,
    answered: bool,
    extra_metrics: dict[str, Any],
    tool_calls: list[dict[str, Any]],
    ended_at: datetime | None = None,
) -> TurnRecord:
    """The stored form of one turn: the engine's report plus what the call knows (``spoken_text``: what the caller
    heard; ``answered``: the turn answers the caller's words, so it has a voice-to-voice time). What the report
    holds is derived here: the generated and speakable text, the timeline, and the playback figures."""
    first = report.metrics.first_audio_s
    playback = playback_of(audio_arrivals(report.events))
    return TurnRecord(
        call_sid=call_sid,
        index=index,
        started_at=started_at,
        ended_at=ended_at or datetime.now(UTC),
        heard_text=heard_text,
        generated_text=" ".join(s.text for s in report.sentences),
        spoken_text=spoken_text,
        barge_in=barge_in,
        dtmf=dtmf,
        first_audio_s=first,
        voice_to_voice_s=(first + endpointing_s) if first is not None and answered else None,
        total_s=report.metrics.total_s,
        metrics={
            **report.metrics.to_dict(),
            # when the reply's playback ends and the silence inside it, by the one playback model (reply seconds)
            "playback_end_s": playback.end_s,
            "gap_s": playback.gap_s,
            "speech_text": report.speech_text,  # what the TTS was given (speakable text)
            **extra_metrics,
        },
        events=stored_events(report.events),
        tool_calls=tool_calls,
    )


@dataclass(frozen=True, slots=True)
class CallEnd:
    """A call ended. ``end_reason``: hangup, caller_stop, client_gone, bad_frames, shutdown, error…"""

    call_sid: str
    ended_at: datetime
    status: CallStatus
    end_reason: str
    recording_path: str | None = None
    transfer_to: str | None = None  # end_reason "transferred": where to (masked before writing)
    answered_by: str | None = None  # outbound calls: Twilio's answering-machine detection (human, machine_end_beep…)


# End reasons of a call that ended as it should; any other marks the call failed.
COMPLETED_REASONS = frozenset(
    {"hangup", "caller_stop", "max_length", "transferred", "agent_hangup", "idle", "voicemail"}
)


def call_end(
    call_sid: str,
    end_reason: str,
    recording_path: str | None = None,
    transfer_to: str | None = None,
    answered_by: str | None = None,
) -> CallEnd:
    """A call ended now, for ``end_reason``: completed or failed by the reason."""
    return CallEnd(
        call_sid=call_sid,
        ended_at=datetime.now(UTC),
        status="completed" if end_reason in COMPLETED_REASONS else "failed",
        end_reason=end_reason,
        recording_path=recording_path,
        transfer_to=transfer_to,
        answered_by=answered_by,
    )


# --- output: what the repository returns --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnEvent:
    """One timeline event of a turn, in the engine's own vocabulary (``index`` is the sentence index)."""

    seq: int
    t: float
    kind: str
    index: int | None
    text: str
    duration_s: float | None
    audio_s: float | None
    reason: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnDetail(TurnFacts):
    """One stored turn with its timeline, events ordered by ``seq``."""

    events: list[TurnEvent] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class CallSummary:
    """One call as listed: its facts plus per-call latency figures (means over its turns)."""

    call_sid: str
    stream_sid: str
    from_masked: str
    to_masked: str
    started_at: datetime
    ended_at: datetime | None
    status: CallStatus
    end_reason: str | None
    providers: dict[str, str]
    turn_count: int
    recording_path: str | None
    mean_first_audio_s: float | None
    mean_voice_to_voice_s: float | None
    barge_ins: int
    direction: str = "inbound"
    answered_by: str | None = None
    transfer_to: str | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds from answer to end, or None while the call is active."""
        return (self.ended_at - self.started_at).total_seconds() if self.ended_at else None


@dataclass(frozen=True, slots=True)
class CallDetail:
    """One call with all its turns (ordered by index) and their timelines."""

    call: CallSummary
    turns: list[TurnDetail]


class Percentiles(TypedDict):
    """p50/p95 of one latency figure over ``count`` turns (None when there are none)."""

    count: int
    p50: float | None
    p95: float | None


class ProviderSetSummary(TypedDict):
    """Latency of the turns of calls that used one stt/llm/tts triple."""

    providers: dict[str, str]
    turns: int
    first_audio_s: Percentiles
    voice_to_voice_s: Percentiles


class LatencySummary(TypedDict):
    """p50/p95 of first response and voice-to-voice over the last ``window`` turns, overall and by providers."""

    window: int
    turns: int
    first_audio_s: Percentiles
    voice_to_voice_s: Percentiles
    by_providers: list[ProviderSetSummary]


# --- masking ------------------------------------------------------------------------------------------------

_SEPARATORS = re.compile(r"[\s\-().]")
_NUMBER = re.compile(r"\+?\d+")
_PLACEHOLDERS = frozenset({"anonymous", "unknown", "restricted", "private", "unavailable"})


def mask_number(number: str) -> str:
    """Mask a phone number for storage: keep the country code and the first digits, and the last 2–4 digits.

    ``+821012345678`` → ``+8210****5678``; ``01012345678`` → ``010****5678``;
    ``+14155551234`` → ``+1415***1234``.
    Short service numbers (4 digits or fewer) are kept; Twilio placeholders such as ``anonymous`` are kept;
    anything else that is not a number (``client:alice``) keeps only its scheme: ``client:***``.
    """
    compact = _SEPARATORS.sub("", number.strip())
    if not compact:
        return ""
    if compact.lower() in _PLACEHOLDERS:
        return compact.lower()
    if not _NUMBER.fullmatch(compact):
        scheme, sep, _ = compact.partition(":")
        return f"{scheme}:***" if sep else "***"
    plus = compact.startswith("+")
    digits = compact.lstrip("+")
    n = len(digits)
    if n <= 4:
        return compact
    tail = 4 if n >= 10 else 2
    head = max(0, min(4 if plus else 3, n - tail - 3))
    masked = n - head - tail
    return ("+" if plus else "") + digits[:head] + "*" * masked + digits[n - tail :]
