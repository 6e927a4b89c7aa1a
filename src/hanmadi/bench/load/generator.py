"""The generator workers (``python -m hanmadi.bench.load --worker SPEC``): each runs its share of the simulated
callers (:func:`hanmadi.telephony.caller.place_call`) on its own event loop and reports them as one JSON line."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import httpx
import numpy as np

from hanmadi.bench.load.sampler import loop_lag
from hanmadi.telephony.caller import CallerConfig, CallerError, CallResult, place_call

UTTERANCE_S: Final = 1.0
CALL_SLACK_S: Final = 30.0  # a call may outlive ``duration_s`` by its last reply and hang-up; past this it is cut


def caller_voice(seconds: float = UTTERANCE_S) -> bytes:
    """Caller speech the VAD hears: a vowel-like harmonic signal, 8 kHz PCM16."""
    t = np.arange(int(8000 * seconds)) / 8000
    sig = np.zeros_like(t)
    for k, f in enumerate([140, 280, 420, 700, 1100]):
        sig += np.sin(2 * np.pi * f * t) / (k + 1)
    return bytes((sig * 6000).astype("<i2").tobytes())


def _error_reason(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, CallerError) and "HTTP" in text:
        return "webhook_http_" + text.rsplit(" ", 1)[-1]
    if isinstance(exc, CallerError):
        return "connect_" + (type(exc.__cause__).__name__ if exc.__cause__ else "failed")
    return "webhook_" + type(exc).__name__


def summarize_call(result: CallResult) -> dict[str, Any]:
    """One call as the aggregate needs it (the full ``CallResult`` carries all the audio)."""
    errors = list(result.errors)
    if result.busy_message is not None:
        errors.append("busy")
    errors += ["no_reply"] * sum(t.timed_out for t in result.turns)
    if result.hung_up_by == "bot":
        errors.append("closed_by_server")
    return {
        "answered": result.answered,
        "first_audio_ms": [t.first_audio_ms for t in result.turns if t.first_audio_ms is not None],
        "gaps_ms": [g for t in result.turns for g in t.gaps_ms],
        "marks": [m.name for m in result.marks],
        "errors": errors,
        "frames_sent": result.frames_sent,
        "late_frames": result.late_frames,
        "max_frame_lateness_ms": round(result.max_frame_lateness_ms, 1),
        "duration_s": round(result.duration_s, 2),
    }


async def _one_call(url: str, auth_token: str | None, delay_s: float, duration_s: float) -> dict[str, Any]:
    await asyncio.sleep(delay_s)
    config = CallerConfig(
        url=url,
        utterances=[caller_voice()],
        auth_token=auth_token,
        turns=10_000,  # bounded by stop_after_s and max_duration_s
        stop_after_s=duration_s,
        max_duration_s=duration_s + CALL_SLACK_S,
        answer_timeout_s=10.0,
    )
    try:
        return summarize_call(await place_call(config))
    except (CallerError, OSError, httpx.HTTPError) as exc:
        return {"answered": False, "errors": [_error_reason(exc)]}


async def run_worker(url: str, auth_token: str | None, delays_s: list[float], duration_s: float) -> dict[str, Any]:
    """Run one caller per entry of ``delays_s`` (its start time), concurrently; their summaries and the loop lag."""
    stop = asyncio.Event()
    lags: list[float] = []
    lag_task = asyncio.create_task(loop_lag(stop, lags))
    cpu0 = time.process_time()
    try:
        calls = await asyncio.gather(*(_one_call(url, auth_token, d, duration_s) for d in delays_s))
    finally:
        stop.set()
        await lag_task
    return {"calls": calls, "loop_lag_ms": lags, "cpu_s": time.process_time() - cpu0}
