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
CALL_CRASHES = Counter(
    "hanmadi_call_crashes_total", "Call tasks that died of an unexpected error, by task", ["task"], registry=REGISTRY
)
STT_FRAMES_DROPPED = Counter(
    "hanmadi_stt_frames_dropped_total", "Caller frames dropped because the STT fell too far behind", registry=REGISTRY
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
STORE_DEGRADED = Gauge(
    "hanmadi_store_degraded",
    "1 while call records wait for the database (failing or journaled), else 0",
    registry=REGISTRY,
)
STORE_PENDING = Gauge("hanmadi_store_pending_records", "Call records not yet in the database", registry=REGISTRY)
STORE_JOURNAL_BYTES = Gauge(
    "hanmadi_store_journal_bytes", "Bytes of records journaled on disk, waiting for the database", registry=REGISTRY
)
REQUESTS_REFUSED = Counter(
    "hanmadi_requests_refused_total",
    "Requests and sockets refused before any work (body_too_large, body_timeout, header_timeout, client_gone, "
    "per_ip_cap, start_timeout, …)",
    ["reason"],
    registry=REGISTRY,
)
DTMF_DROPPED = Counter(
    "hanmadi_dtmf_dropped_total", "Keypad digits dropped because too many were pending in one turn", registry=REGISTRY
)
PREEMPTIVE = Counter(
    "hanmadi_preemptive_total",
    "Preemptive LLM answers started at a caller's pause, by outcome (hit, miss, resumed)",
    ["outcome"],
    registry=REGISTRY,
)
STT_FINAL_PASSES = Counter(
    "hanmadi_stt_final_passes_total",
    "Whisper final passes of the local STT, by outcome (kept: started at a pause and used; resumed: dropped, the "
    "caller went on; fresh: run at the end of the turn; fallback: failed or too slow, Vosk's words used)",
    ["outcome"],
    registry=REGISTRY,
)
STT_FINAL_WAIT = Histogram(
    "hanmadi_stt_final_wait_seconds",
    "End of the caller's turn to the local STT's final transcript (what speculation did not hide)",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
TOOL_CALLS = Counter(
    "hanmadi_tool_calls_total",
    "Tool calls made by the agent, by tool and status (ok, timeout, http_4xx, http_5xx, bad_json, …)",
    ["tool", "status"],
    registry=REGISTRY,
)
TOOL_SECONDS = Histogram(
    "hanmadi_tool_seconds", "Time from a tool call to its answer", ["tool"], buckets=_LATENCY_BUCKETS, registry=REGISTRY
)
TOOL_FILLERS = Counter("hanmadi_tool_fillers_total", "Filler phrases spoken while a tool ran", registry=REGISTRY)
TWILIO_REST_ERRORS = Counter(
    "hanmadi_twilio_rest_errors_total", "Failed Twilio REST requests, by operation", ["op"], registry=REGISTRY
)
WEBHOOK_DELIVERIES = Counter(
    "hanmadi_webhook_deliveries_total",
    "Call webhook delivery attempts, by outcome (delivered, retry, failed)",
    ["outcome"],
    registry=REGISTRY,
)
KNOWLEDGE_RELOADS = Counter(
    "hanmadi_knowledge_reloads_total",
    "Reloads of the knowledge file (SIGHUP or file change), by outcome (ok, error: the old knowledge is kept)",
    ["outcome"],
    registry=REGISTRY,
)
KNOWLEDGE_ITEMS = Gauge("hanmadi_knowledge_items", "Entries and facts in the knowledge in use", registry=REGISTRY)
KNOWLEDGE_TURNS = Counter(
    "hanmadi_knowledge_turns_total",
    "Agent turns by how the knowledge shaped them (answer, grounded, unknown, open)",
    ["mode"],
    registry=REGISTRY,
)
