"""hanmadi.engine: the real-time hybrid response path (parallel TTS, in-order delivery, timeline)."""

from hanmadi.engine.reorder import ReorderBuffer
from hanmadi.engine.scheduler import EngineConfig, Reply, SentenceReport, Sink, TurnReport
from hanmadi.engine.strategies import STRATEGIES, Strategy, get_strategy
from hanmadi.engine.timeline import (
    Timeline,
    TimelineEvent,
    TurnMetrics,
    audio_arrivals,
    compute_metrics,
    format_event,
)

__all__ = [
    "STRATEGIES",
    "EngineConfig",
    "ReorderBuffer",
    "Reply",
    "SentenceReport",
    "Sink",
    "Strategy",
    "Timeline",
    "TimelineEvent",
    "TurnMetrics",
    "TurnReport",
    "audio_arrivals",
    "compute_metrics",
    "format_event",
    "get_strategy",
]
