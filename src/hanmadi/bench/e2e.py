"""``hanmadi bench e2e``: voice-to-voice latency through the real server and socket on the configured stack.

Voice-to-voice is measured by the caller: from the last frame of its own speech to the first frame of bot audio it
receives. The breakdown comes from the server's timeline of each turn (stored with the call records):
endpointing (silence the turn detector waited), stt_final (end of speech detected -> final transcript), llm_first
sentence (pipeline start -> first complete sentence), tts_first_audio (sentence -> its first audio sent), send
(first audio handed to the socket -> done). ``end_of_turn`` counts which silence ended each caller turn; its
``final`` share (``korean_early_share``) is the turns ended early by a Korean sentence-final ending.
"""

from __future__ import annotations

import statistics
from typing import Any

from rich.console import Console
from rich.table import Table

from hanmadi.bench import percentile
from hanmadi.config import Settings
from hanmadi.demo import offline_call
from hanmadi.store.records import TurnDetail

# The caller's lines, cycled: short phone utterances of a reservation call.
LINES = [
    "내일 저녁 일곱 시에 두 명 예약하고 싶어요.",
    "주차는 가능한가요?",
    "창가 자리로 부탁드려요.",
    "몇 시까지 영업하세요?",
    "네, 감사합니다.",
]


def breakdown(turn: TurnDetail) -> dict[str, float] | None:
    """Where one turn's time went, in ms, from its stored timeline (None if the turn never spoke)."""
    first_of: dict[str, float] = {}
    for event in turn.events:
        if event.kind in ("turn_start", "sentence", "send_start", "send_done", "chunk_sent"):
            first_of.setdefault(event.kind, event.t)
    needed = ("turn_start", "sentence", "send_start")
    if any(k not in first_of for k in needed) or turn.voice_to_voice_s is None or turn.first_audio_s is None:
        return None
    first_sent = first_of.get("chunk_sent", first_of.get("send_done", first_of["send_start"]))
    return {
        "endpointing": (turn.voice_to_voice_s - turn.first_audio_s) * 1000,
        "stt_final": first_of["turn_start"] * 1000,
        "llm_first_sentence": (first_of["sentence"] - first_of["turn_start"]) * 1000,
        "tts_first_audio": (first_of["send_start"] - first_of["sentence"]) * 1000,
        "send": max(0.0, first_sent - first_of["send_start"]) * 1000,
    }


async def run_e2e(settings: Settings, *, turns: int, console: Console) -> dict[str, Any]:
    """Place one call of ``turns`` caller turns and report voice-to-voice percentiles and the breakdown."""
    lines = [LINES[i % len(LINES)] for i in range(turns)]
    result, detail = await offline_call(settings, lines, console)
    measured = [t.first_audio_ms for t in result.turns if t.first_audio_ms is not None]
    parts: dict[str, list[float]] = {}
    preemptive_hits = 0
    end_rules = {"final": 0, "connective": 0, "default": 0}
    for turn in detail.turns if detail else []:
        if turn.index == 0:
            continue  # the greeting has no caller speech before it
        preemptive_hits += bool(turn.metrics.get("preemptive"))
        rule = str(turn.metrics.get("end_rule", "default"))
        end_rules[rule] = end_rules.get(rule, 0) + 1
        split = breakdown(turn)
        for key, value in (split or {}).items():
            parts.setdefault(key, []).append(value)
    return {
        "turns": turns,
        "answered_turns": len(measured),
        "voice_to_voice_ms": {"p50": percentile(measured, 50), "p95": percentile(measured, 95)},
        "breakdown_ms": {key: round(statistics.median(values), 1) for key, values in parts.items()},
        "providers": {"stt": settings.stt, "llm": settings.llm, "tts": settings.tts},
        "preemptive_generation": settings.preemptive_generation,
        "preemptive_hits": preemptive_hits,
        # which silence ended the caller's turns; "final" = ended early by the Korean rule (…요, …니다, …까, ?)
        "end_of_turn": end_rules,
        "korean_early_share": round(end_rules["final"] / n_rules, 3) if (n_rules := sum(end_rules.values())) else None,
        "call_sid": result.call_sid,
    }


def render_table(result: dict[str, Any]) -> Table:
    """The e2e result as a Rich table."""
    table = Table(title=f"voice-to-voice over {result['turns']} turns ({result['providers']})")
    table.add_column("measure")
    table.add_column("ms", justify="right")
    for key, value in result["voice_to_voice_ms"].items():
        table.add_row(f"voice_to_voice {key}", "-" if value is None else f"{value:.0f}")
    for key, value in result["breakdown_ms"].items():
        table.add_row(f"  {key} (median)", f"{value:.0f}")
    return table
