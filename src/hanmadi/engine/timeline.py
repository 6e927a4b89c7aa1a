"""One turn's timeline: events in seconds since the end of the caller's speech, the seed-format log, metrics.

The timeline is the single source of truth for a turn: the log lines, the JSON events and the per-turn metrics
(:func:`compute_metrics`) are all derived from the same list of :class:`TimelineEvent`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

LOGGER = logging.getLogger("hanmadi.engine")

# Every kind of event the engine emits. ``chunk_sent`` (one audio chunk handed to the sink) is logged at DEBUG and
# left out of :meth:`Timeline.lines` so that a one-chunk TTS reproduces the seed's log exactly.
KINDS = (
    "turn_start",
    "sentence",
    "tts_start",
    "tts_retry",
    "tts_done",
    "send_start",
    "chunk_sent",
    "send_done",
    "skip",
    "llm_error",
    "cancel",
    "done",
    "tool_start",  # the agent called a tool (``text`` its name); emitted by the tool runner, not the engine
    "tool_end",  # ``reason`` its status (ok, timeout, http_5xx…), ``duration_s`` how long it took
)

_PIPELINE_KO = {
    "realtime": "실시간 하이브리드 파이프라인 시작",
    "two_stage": "2단계 하이브리드 파이프라인 시작",
    "sequential": "순차 파이프라인 시작",
}
_PIPELINE_EN = {
    "realtime": "realtime hybrid pipeline started",
    "two_stage": "two-stage hybrid pipeline started",
    "sequential": "sequential pipeline started",
}


@dataclass(frozen=True)
class TimelineEvent:
    """Something that happened during a turn, ``t`` seconds after the end of the caller's speech.

    ``index`` is the sentence index; ``duration_s`` a TTS time; ``audio_s`` seconds of audio; ``final`` marks the
    answer's last sentence when the engine knows it (a sentence flushed at the end of the LLM stream).
    """

    t: float
    kind: str
    index: int | None = None
    text: str = ""
    duration_s: float | None = None
    audio_s: float | None = None
    reason: str = ""
    final: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The event as a JSON-ready dict (unset optional fields left out)."""
        return {k: v for k, v in asdict(self).items() if v is not None and v != "" and v is not False}


def _s(value: float | None) -> str:
    return f"{value or 0.0:.2f}"


def format_event(ev: TimelineEvent, lang: str = "ko") -> str:
    """One log line in the seed's format, e.g. ``[+1.05초] 문장[0] TTS 완료 (0.53초 소요)``."""
    ko = lang != "en"
    unit = "초" if ko else "s"
    stamp = f"[+{ev.t:.2f}{unit}]"
    i = ev.index
    noun = f"문장[{i}]" if ko else f"sentence[{i}]"
    k = ev.kind
    if k == "turn_start":
        if ko:
            return f"[발화 종료 +{ev.t:.2f}초] {_PIPELINE_KO.get(ev.text, f'{ev.text} 파이프라인 시작')}"
        return f"[end of speech +{ev.t:.2f}s] {_PIPELINE_EN.get(ev.text, f'{ev.text} pipeline started')}"
    if ko:
        body = {
            "sentence": f"{noun} 생성{'(마지막)' if ev.final else ''}: {ev.text}",
            "tts_start": f"{noun} TTS 시작",
            "tts_retry": f"{noun} TTS 재시도 (사유: {ev.reason})",
            "tts_done": f"{noun} TTS 완료 ({_s(ev.duration_s)}초 소요)",
            "send_start": f"{noun} 전송 시작",
            "chunk_sent": f"{noun} 오디오 조각 전송 ({_s(ev.audio_s)}초)",
            "send_done": f"{noun} 전송 완료 (재생: {_s(ev.audio_s)}초)",
            "skip": f"{noun} 건너뜀 (사유: {ev.reason})",
            "llm_error": f"LLM 오류로 응답 중단 (사유: {ev.reason})",
            "cancel": f"응답 취소 (사유: {ev.reason}, 전송된 재생시간: {_s(ev.audio_s)}초)",
            "done": f"전체 완료 (재생시간: {_s(ev.audio_s)}초)",
            "tool_start": f"도구 호출: {ev.text}",
            "tool_end": f"도구 응답: {ev.text} ({ev.reason}, {_s(ev.duration_s)}초 소요)",
        }.get(k, f"{k} {ev.text}".strip())
    else:
        body = {
            "sentence": f"{noun} generated{' (last)' if ev.final else ''}: {ev.text}",
            "tts_start": f"{noun} TTS started",
            "tts_retry": f"{noun} TTS retry (reason: {ev.reason})",
            "tts_done": f"{noun} TTS done ({_s(ev.duration_s)}s)",
            "send_start": f"{noun} send started",
            "chunk_sent": f"{noun} audio chunk sent ({_s(ev.audio_s)}s)",
            "send_done": f"{noun} sent (playback: {_s(ev.audio_s)}s)",
            "skip": f"{noun} skipped (reason: {ev.reason})",
            "llm_error": f"LLM error, answer cut short (reason: {ev.reason})",
            "cancel": f"reply cancelled (reason: {ev.reason}, audio sent: {_s(ev.audio_s)}s)",
            "done": f"all done (playback: {_s(ev.audio_s)}s)",
            "tool_start": f"tool called: {ev.text}",
            "tool_end": f"tool answered: {ev.text} ({ev.reason}, {_s(ev.duration_s)}s)",
        }.get(k, f"{k} {ev.text}".strip())
    return f"{stamp} {body}"


class Timeline:
    """Records a turn's events in seconds since ``t0`` (the end of the caller's speech, ``time.monotonic()``)."""

    def __init__(
        self,
        t0: float | None = None,
        lang: str = "ko",
        logger: logging.Logger | None = None,
        listeners: list[Callable[[TimelineEvent], None]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.t0 = clock() if t0 is None else t0
        self.lang = lang
        self.logger = logger or LOGGER
        self.listeners = list(listeners or [])
        self.events: list[TimelineEvent] = []

    def now(self) -> float:
        """Seconds since the end of the caller's speech."""
        return self.clock() - self.t0

    def emit(self, kind: str, **fields: Any) -> TimelineEvent:
        """Record an event at the current time, log it in the seed's format and tell the listeners."""
        ev = TimelineEvent(t=self.now(), kind=kind, **fields)
        self.events.append(ev)
        level = logging.DEBUG if kind == "chunk_sent" else logging.INFO
        if self.logger.isEnabledFor(level):
            self.logger.log(level, "%s", format_event(ev, self.lang))
        for listener in self.listeners:
            listener(ev)
        return ev

    def lines(self, verbose: bool = False) -> list[str]:
        """The log lines in the seed's format (``verbose`` adds one line per audio chunk sent)."""
        return [format_event(ev, self.lang) for ev in self.events if verbose or ev.kind != "chunk_sent"]


@dataclass
class TurnMetrics:
    """What the caller experienced during one turn, derived from its timeline events.

    ``first_audio_s``: end of speech → first audio handed to the sink (the first chunk with a streaming TTS);
    ``total_s``: last sentence sent. How the caller hears it (when playback ends, the silences inside) is not the
    engine's to model: :func:`audio_arrivals` feeds the one playback model, ``hanmadi.telephony.playback``.
    """

    first_audio_s: float | None = None
    total_s: float | None = None
    order: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    tts_s: dict[int, float] = field(default_factory=dict)
    max_parallel_tts: int = 0
    sentences: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``tts_s`` keys become strings)."""
        d = asdict(self)
        d["tts_s"] = {str(k): v for k, v in self.tts_s.items()}
        return d


def compute_metrics(events: Iterable[TimelineEvent]) -> TurnMetrics:
    """Derive a turn's metrics from its events (see :class:`TurnMetrics`)."""
    evs = list(events)
    m = TurnMetrics()
    in_flight: set[int] = set()
    for ev in evs:
        if ev.kind == "sentence":
            m.sentences += 1
        elif ev.kind == "tts_start" and ev.index is not None:
            in_flight.add(ev.index)
            m.max_parallel_tts = max(m.max_parallel_tts, len(in_flight))
        elif ev.kind == "tts_done" and ev.index is not None:
            in_flight.discard(ev.index)
            if ev.duration_s is not None:
                m.tts_s[ev.index] = ev.duration_s
        elif ev.kind == "skip" and ev.index is not None:
            in_flight.discard(ev.index)
            m.skipped.append(ev.index)
        elif ev.kind == "cancel":
            in_flight.clear()
        elif ev.kind == "send_done" and ev.index is not None:
            m.order.append(ev.index)
            m.total_s = ev.t
    arrivals = audio_arrivals(evs)
    if arrivals:
        m.first_audio_s = arrivals[0][0]
    m.skipped.sort()
    return m


def audio_arrivals(events: Iterable[TimelineEvent]) -> list[tuple[float, float]]:
    """``(time, seconds of audio)`` of each piece handed to the sink, in order: every ``chunk_sent``, or — for
    events without per-chunk detail — each sentence whole at its ``send_done``."""
    evs = list(events)
    arrivals = [(ev.t, ev.audio_s or 0.0) for ev in evs if ev.kind == "chunk_sent"]
    return arrivals or [(ev.t, ev.audio_s or 0.0) for ev in evs if ev.kind == "send_done"]
