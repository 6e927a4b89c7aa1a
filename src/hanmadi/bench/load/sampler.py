"""Measuring equipment of ``hanmadi load``: event-loop lag, a process's CPU and RSS, the server's histograms."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import httpx

_SAMPLE_EVERY_S: Final = 0.5
_LAG_TICK_S: Final = 0.010


async def loop_lag(stop: asyncio.Event, lags: list[float], at: list[float] | None = None) -> None:
    """How late this event loop wakes a 10 ms timer (ms); ``at`` gets each sample's monotonic time."""
    while not stop.is_set():
        due = time.monotonic() + _LAG_TICK_S
        await asyncio.sleep(_LAG_TICK_S)
        now = time.monotonic()
        lags.append(max(0.0, now - due) * 1000)
        if at is not None:
            at.append(now)


@dataclass
class ProcSampler:
    """CPU and RSS of one process from ``/proc``, sampled every half second."""

    pid: int
    rss_mb: list[float] = field(default_factory=list)
    _ticks: float = float(os.sysconf("SC_CLK_TCK"))

    def cpu_s(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self._ticks  # utime + stime

    def rss(self) -> float:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    async def sample(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(OSError):
                self.rss_mb.append(self.rss())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), _SAMPLE_EVERY_S)


_SCRAPED: Final = ("hanmadi_voice_to_voice_seconds", "hanmadi_first_response_seconds")


async def scrape(url: str) -> dict[str, float]:
    """Sums and counts of the server's latency histograms (Prometheus text format)."""
    async with httpx.AsyncClient(timeout=10.0) as client:
        text = (await client.get(f"{url}/metrics")).text
    values: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.endswith(("_sum", "_count")) and name.rsplit("_", 1)[0] in _SCRAPED:
            values[name] = float(value)
    return values


def server_means(before: dict[str, float], after: dict[str, float]) -> dict[str, float | None]:
    """Mean of each scraped histogram over the load (ms): the server's own view of the latency."""
    means: dict[str, float | None] = {}
    for metric in _SCRAPED:
        n = after.get(metric + "_count", 0.0) - before.get(metric + "_count", 0.0)
        total = after.get(metric + "_sum", 0.0) - before.get(metric + "_sum", 0.0)
        key = metric.removeprefix("hanmadi_").removesuffix("_seconds") + "_mean_ms"
        means[key] = round(total / n * 1000, 1) if n else None
    return means


def machine_ticks() -> list[int] | None:
    """The machine's CPU time so far from ``/proc/stat`` (user … steal, in clock ticks), or None off Linux."""
    try:
        first = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    return [int(x) for x in first[1:9]] if first and first[0] == "cpu" else None


def machine_share(before: list[int] | None, after: list[int] | None) -> dict[str, float] | None:
    """What the whole machine did between two ``machine_ticks`` (% of all its cores): busy, idle, stolen.

    A run whose server and generators used less than the machine had, yet lagged, ran short of CPU for another
    reason — ``steal_pct`` is the hypervisor giving this virtual machine's cores to others."""
    if before is None or after is None:
        return None
    user, nice, system, idle, iowait, irq, softirq, steal = (b - a for a, b in zip(before, after, strict=True))
    total = user + nice + system + idle + iowait + irq + softirq + steal
    if total <= 0:
        return None
    return {
        "busy_pct": round((user + nice + system + irq + softirq) / total * 100, 1),
        "idle_pct": round((idle + iowait) / total * 100, 1),
        "steal_pct": round(steal / total * 100, 1),
    }
