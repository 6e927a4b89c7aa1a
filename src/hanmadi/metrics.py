"""Prometheus metrics: one registry for the process, defined in one place.

Modules increment these directly; ``/metrics`` exposes them. Labels are short, bounded vocabularies (reasons,
provider names), never free text or call ids.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)

ACTIVE_CALLS = Gauge("hanmadi_active_calls", "Calls in progress", registry=REGISTRY)
CALLS_ENDED = Counter("hanmadi_calls_ended_total", "Calls ended, by reason", ["reason"], registry=REGISTRY)
CALLS_REJECTED = Counter("hanmadi_calls_rejected_total", "Calls refused, by reason", ["reason"], registry=REGISTRY)
FIRST_RESPONSE = Histogram(
    "hanmadi_first_response_seconds",
    "End of caller speech to first audio sent",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
VOICE_TO_VOICE = Histogram(
    "hanmadi_voice_to_voice_seconds",
    "Caller stops speaking (last voiced frame) to first bot audio sent",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
TTS_LATENCY = Histogram(
    "hanmadi_tts_seconds", "TTS time per sentence", ["provider"], buckets=_LATENCY_BUCKETS, registry=REGISTRY
)
SENTENCES_SKIPPED = Counter(
    "hanmadi_sentences_skipped_total", "Sentences skipped, by reason", ["reason"], registry=REGISTRY
)
BARGE_INS = Counter("hanmadi_barge_ins_total", "Caller interrupted the bot", registry=REGISTRY)
BAD_FRAMES = Counter(
    "hanmadi_bad_frames_total", "Rejected Media Streams messages, by reason", ["reason"], registry=REGISTRY
)
PROVIDER_ERRORS = Counter(
    "hanmadi_provider_errors_total", "Provider failures", ["provider", "reason"], registry=REGISTRY
)
WEBHOOKS_REJECTED = Counter(
    "hanmadi_webhooks_rejected_total", "Webhook requests refused, by reason", ["reason"], registry=REGISTRY
)
STORE_ERRORS = Counter("hanmadi_store_errors_total", "Failed writes of call records", ["op"], registry=REGISTRY)
PREEMPTIVE = Counter(
    "hanmadi_preemptive_total",
    "Preemptive LLM answers started at a caller's pause, by outcome (hit, miss, resumed)",
    ["outcome"],
    registry=REGISTRY,
)
