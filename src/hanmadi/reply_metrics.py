"""Process-wide metrics of one reply, derived in the call layer from the engine's turn report.

The engine records no process-wide metrics (a bench run or a test must not move the server's figures): each
failure, skip and TTS latency is an event of the turn's timeline, and the call turns them into Prometheus
samples once, here.
"""

from __future__ import annotations

from hanmadi import metrics
from hanmadi.engine.scheduler import TurnReport


def observe_reply(report: TurnReport, *, tts: str, llm: str, answer: bool, endpointing_s: float) -> None:
    """Count ``report``'s provider failures, skips and TTS times; time the first audio of a real ``answer``.

    ``answer`` is False for a greeting or a goodbye: they answer nobody, so they are not response times.
    """
    for event in report.events:
        if event.kind == "tts_retry":
            metrics.PROVIDER_ERRORS.labels(provider=tts, reason=event.reason or "error").inc()
        elif event.kind == "skip":
            reason = event.reason or "error"
            metrics.PROVIDER_ERRORS.labels(provider=tts, reason=reason).inc()
            metrics.SENTENCES_SKIPPED.labels(reason=reason).inc()
        elif event.kind == "llm_error":
            metrics.PROVIDER_ERRORS.labels(provider=llm, reason=event.reason or "error").inc()
        elif event.kind == "tts_done" and event.duration_s is not None:
            metrics.TTS_LATENCY.labels(tts).observe(event.duration_s)
    first = report.metrics.first_audio_s
    if answer and first is not None:
        metrics.FIRST_RESPONSE.observe(first)
        metrics.VOICE_TO_VOICE.observe(first + endpointing_s)
