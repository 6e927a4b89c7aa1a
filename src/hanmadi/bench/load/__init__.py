"""``hanmadi load``: N concurrent simulated phone calls against one server, in real time, on loopback.

Three kinds of process, so that no two of them share a GIL:

- the **server** (:mod:`.server`): the real app under uvicorn, with simulated providers on the seed's latency
  profile (``SEED_SCENARIO``: sentences ready 0.50/1.00/1.50 s after the transcript, TTS 0.53/1.20/0.82 s, audio
  0.52/1.18/0.80 s), every call recorded to a SQLite file as in production (``record=False`` / ``--no-record``
  measures the real-time path alone), INFO logging to a file; skipped when ``url`` names a running server;
- **generator workers** (:mod:`.generator`): each runs its share of the callers
  (:func:`hanmadi.telephony.caller.place_call`) on its own event loop and reports them as one JSON line;
- this process (here): starts the others, samples the server's CPU and RSS from ``/proc`` (:mod:`.sampler`), and
  aggregates.

Each caller waits for the greeting, then speaks one second, waits for the whole reply, and speaks again until
``duration_s`` has passed since its call started; the calls start evenly over ``ramp_s``. First, one call runs alone
(the baseline), in the same run and with the same code.

Definitions: ``first_audio_ms`` is the caller's end of speech → first bot audio frame (endpointing included), over
every caller turn; ``order_violations`` counts marks ``t{turn}s{index}`` received after a mark with a higher index of
the same turn; ``late_frames`` counts caller microphone frames that left more than 20 ms after their due time (the
generator fell behind — its numbers are then suspect, not the server's); bot audio gaps are reported apart
(``bot_gaps_ms``), because the seed profile itself has a gap between its first and second sentence.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import secrets
import sqlite3
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Final

import httpx
import numpy as np

from hanmadi.bench.load.generator import CALL_SLACK_S, caller_voice, run_worker, summarize_call
from hanmadi.bench.load.sampler import ProcSampler, machine_share, machine_ticks, scrape, server_means
from hanmadi.bench.load.server import load_providers, serve
from hanmadi.net import free_port

__all__ = [
    "caller_voice",
    "load_providers",
    "order_violations",
    "percentiles",
    "run_load",
    "run_worker",
    "serve",
    "summarize_call",
]

GREETING_TURN_MARK: Final = 0  # the server's turn 0 is the greeting; caller turn i is server turn i + 1
# Up to 100 callers share a worker's event loop, and never more workers than cores: on 2 cores, 4 workers of 50
# cost 101 µs of generator CPU per frame and left the server a smaller share; 2 workers of 100 cost 85 µs.
CALLS_PER_WORKER: Final = 100
GENERATOR_NICE: Final = 5
_START_TIMEOUT_S: Final = 30.0


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p95/p99 (linear interpolation), rounded to 0.1 ms; None when there are no values."""
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    q = np.percentile(np.asarray(values, dtype=float), [50, 95, 99])
    return {"p50": round(float(q[0]), 1), "p95": round(float(q[1]), 1), "p99": round(float(q[2]), 1)}


def order_violations(marks: list[str]) -> int:
    """Marks ``t{turn}s{index}`` (in the order received) that came after a higher index of the same turn."""
    from hanmadi.telephony.twilio import parse_mark_name

    highest: dict[int, int] = {}
    violations = 0
    for name in marks:
        parsed = parse_mark_name(name)
        if parsed is None:
            continue
        turn, index = parsed
        if index < highest.get(turn, -1):
            violations += 1
        highest[turn] = max(highest.get(turn, -1), index)
    return violations


async def _start_server(
    port: int, auth_token: str, max_calls: int, log_file: str, database_url: str | None
) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hanmadi.bench.load",
        "--serve-port",
        str(port),
        "--max-calls",
        str(max_calls),
        "--log-file",
        log_file,
        *(["--database-url", database_url] if database_url else []),
        env={**os.environ, "HANMADI_LOAD_AUTH_TOKEN": auth_token},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    deadline = time.monotonic() + _START_TIMEOUT_S
    async with httpx.AsyncClient(timeout=1.0) as client:
        while time.monotonic() < deadline:
            if proc.returncode is not None:
                raise RuntimeError(f"load server exited with {proc.returncode}; see {log_file}")
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return proc
            await asyncio.sleep(0.1)
    await _stop(proc)
    raise RuntimeError(f"load server did not start within {_START_TIMEOUT_S:.0f} s; see {log_file}")


async def _stop(proc: asyncio.subprocess.Process, timeout_s: float = 10.0) -> None:
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()


async def _run_workers(
    url: str, auth_token: str | None, delays_s: list[float], duration_s: float, workers: int
) -> list[dict[str, Any]]:
    """Split the callers round-robin over ``workers`` subprocesses; each prints one JSON line."""
    shares = [delays_s[w::workers] for w in range(workers) if delays_s[w::workers]]
    bound_s = max(delays_s, default=0.0) + duration_s + CALL_SLACK_S + 30.0
    procs = []
    for share in shares:
        spec = json.dumps({"url": url, "auth_token": auth_token, "delays_s": share, "duration_s": duration_s})
        procs.append(
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "hanmadi.bench.load",
                "--worker",
                spec,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        )
    try:
        async with asyncio.timeout(bound_s):
            outputs = await asyncio.gather(*(p.communicate() for p in procs))
    finally:
        for p in procs:
            await _stop(p)
    reports = []
    for (out, err), share in zip(outputs, shares, strict=True):
        try:
            reports.append(json.loads(out.decode().strip().splitlines()[-1]))
        except (ValueError, IndexError):
            reason = "worker_failed:" + (err.decode().strip().splitlines() or ["?"])[-1][:80]
            reports.append({"calls": [{"answered": False, "errors": [reason]} for _ in share], "loop_lag_ms": []})
    return reports


def _aggregate(reports: list[dict[str, Any]]) -> dict[str, Any]:
    calls = [c for r in reports for c in r["calls"]]
    lags = [x for r in reports for x in r["loop_lag_ms"]]
    cpu_s = sum(r.get("cpu_s", 0.0) for r in reports)
    errors: Counter[str] = Counter()
    for c in calls:
        errors.update(e.split(":", 1)[0] if e.startswith("worker_failed") else e for e in c["errors"])
    first = [x for c in calls for x in c.get("first_audio_ms", [])]
    gaps = [x for c in calls for x in c.get("gaps_ms", [])]
    completed = sum(1 for c in calls if c["answered"] and c.get("first_audio_ms") and not c["errors"])
    return {
        "completed": completed,
        "turns": len(first),
        "first_audio_ms": percentiles(first),
        "order_violations": sum(order_violations(c.get("marks", [])) for c in calls),
        "late_frames": sum(c.get("late_frames", 0) for c in calls),
        "frames_sent": sum(c.get("frames_sent", 0) for c in calls),
        "max_frame_lateness_ms": max((c.get("max_frame_lateness_ms", 0.0) for c in calls), default=0.0),
        "bot_gaps_ms": {"count": len(gaps), **percentiles(gaps)},
        "generator_loop_lag_ms": {**percentiles(lags), "max": round(max(lags, default=0.0), 1)},
        "generator_cpu_s": round(cpu_s, 1),
        "errors": dict(errors),
    }


async def run_load(
    calls: int,
    ramp_s: float,
    duration_s: float,
    url: str | None = None,
    *,
    auth_token: str | None = None,
    workers: int | None = None,
    baseline_s: float | None = None,
    record: bool = True,
) -> dict[str, Any]:
    """Run ``calls`` concurrent simulated calls for ``duration_s`` each, started over ``ramp_s``; the report.

    Starts a load server in its own process unless ``url`` names a running one (then ``auth_token`` must be its
    Twilio auth token, or None for a ``--dev`` server, and the server's CPU/RSS are not measured). ``workers``
    generator processes (default one per 100 calls, at most one per core) run the callers. The baseline is one
    call alone for ``baseline_s`` (default ``min(duration_s, 20)``), just before the load. With ``record`` (the
    default, as in production) the server records every call to a SQLite file; ``recorded_calls`` counts them.
    """
    if calls < 1 or duration_s <= 0 or ramp_s < 0:
        raise ValueError("need calls >= 1, duration_s > 0, ramp_s >= 0")
    default_workers = min(os.cpu_count() or 1, math.ceil(calls / CALLS_PER_WORKER))
    workers = max(1, min(calls, workers or default_workers))
    baseline_s = min(duration_s, 20.0) if baseline_s is None else baseline_s
    tmp = tempfile.TemporaryDirectory(prefix="hanmadi-load-")
    server: asyncio.subprocess.Process | None = None
    log_file = str(Path(tmp.name) / "server.log")
    database = Path(tmp.name) / "calls.db"
    recorded: int | None = None
    try:
        if url is None:
            port = free_port()
            auth_token = secrets.token_hex(16)
            database_url = f"sqlite+aiosqlite:///{database}" if record else None
            server = await _start_server(port, auth_token, calls + 10, log_file, database_url)
            url = f"http://127.0.0.1:{port}"
        sampler = ProcSampler(server.pid) if server is not None else None
        base = _aggregate(await _run_workers(url, auth_token, [0.0], baseline_s, 1))
        idle_rss = sampler.rss() if sampler else None
        stop = asyncio.Event()
        sampling = asyncio.create_task(sampler.sample(stop)) if sampler else None
        scraped = await scrape(url)
        cpu0, t0, machine0 = (sampler.cpu_s() if sampler else 0.0), time.monotonic(), machine_ticks()
        delays = [ramp_s * i / calls for i in range(calls)]
        load = _aggregate(await _run_workers(url, auth_token, delays, duration_s, workers))
        cpu1, t1, machine1 = (sampler.cpu_s() if sampler else 0.0), time.monotonic(), machine_ticks()
        server_view = server_means(scraped, await scrape(url))
        stats: dict[str, Any] = {"loop_lag_ms": [], "at": [], "loop": None}
        if server is not None:
            async with httpx.AsyncClient(timeout=10.0) as client:
                stats = (await client.get(f"{url}/load/loop-lag")).json()
        stop.set()
        if sampling is not None:
            await sampling
    finally:
        if server is not None:
            await _stop(server)  # a drained shutdown: the recorder has written everything
            if record:
                recorded = _count_calls(database)
        tmp.cleanup()
    server_lags = [lag for lag, at in zip(stats["loop_lag_ms"], stats["at"], strict=True) if t0 <= at <= t1]
    peak_rss = max(sampler.rss_mb, default=0.0) if sampler else None
    base_first = base["first_audio_ms"]["p50"]
    p95 = load["first_audio_ms"]["p95"]
    return {
        "calls": calls,
        "completed": load["completed"],
        "first_audio_ms": load["first_audio_ms"],
        "baseline_first_audio_ms": base_first,
        "p95_over_baseline_ms": None if p95 is None or base_first is None else round(p95 - base_first, 1),
        "order_violations": load["order_violations"],
        "late_frames": load["late_frames"],
        "errors": load["errors"],
        "server_cpu_pct": round((cpu1 - cpu0) / (t1 - t0) * 100, 1) if sampler else None,
        "server_cpu_us_per_frame": (
            round((cpu1 - cpu0) / load["frames_sent"] * 1e6, 1) if sampler and load["frames_sent"] else None
        ),
        "server_rss_mb": None if peak_rss is None else round(peak_rss, 1),
        "server_idle_rss_mb": None if idle_rss is None else round(idle_rss, 1),
        "rss_per_call_mb": (
            None if peak_rss is None or idle_rss is None else round(max(0.0, peak_rss - idle_rss) / calls, 3)
        ),
        "turns": load["turns"],
        "frames_sent": load["frames_sent"],
        "max_frame_lateness_ms": load["max_frame_lateness_ms"],
        "bot_gaps_ms": load["bot_gaps_ms"],
        "baseline_bot_gaps_ms": base["bot_gaps_ms"],
        "generator_loop_lag_ms": load["generator_loop_lag_ms"],
        "server_loop_lag_ms": {**percentiles(server_lags), "max": round(max(server_lags, default=0.0), 1)},
        "server_view": server_view,
        "generator_workers": workers,
        "generator_cpu_pct": round(load["generator_cpu_s"] / (t1 - t0) * 100, 1),
        "generator_cpu_us_per_frame": (
            round(load["generator_cpu_s"] / load["frames_sent"] * 1e6, 1) if load["frames_sent"] else None
        ),
        "ramp_s": ramp_s,
        "duration_s": duration_s,
        "wall_s": round(t1 - t0, 1),
        "recorder": record if server is not None else None,
        "recorded_calls": recorded,
        "server": "external" if server is None else "subprocess, simulated seed-profile providers",
        "server_event_loop": stats.get("loop"),
        "machine_cpu": machine_share(machine0, machine1),
    }


def _count_calls(database: Path) -> int | None:
    """How many calls the load server stored (None if the database was never created)."""
    if not database.exists():
        return None
    with sqlite3.connect(database) as db:
        return int(db.execute("SELECT count(*) FROM calls").fetchone()[0])
