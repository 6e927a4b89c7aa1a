"""``hanmadi load``, small and bounded: a real server process, generator workers, the report's shape and health."""

from __future__ import annotations

import pytest

from hanmadi.bench.load import order_violations, percentiles, run_load
from hanmadi.bench.load.sampler import machine_share

pytestmark = pytest.mark.e2e

REPORT_KEYS = {
    "calls",
    "completed",
    "first_audio_ms",
    "baseline_first_audio_ms",
    "order_violations",
    "late_frames",
    "errors",
    "server_cpu_pct",
    "server_rss_mb",
    "rss_per_call_mb",
}


def test_order_violations_count_a_lower_index_after_a_higher_one_in_the_same_turn() -> None:
    assert order_violations(["t1s0", "t1s1", "t1s2", "t2s0", "t2s1"]) == 0
    assert order_violations(["t1s0", "t1s2", "t1s1", "t2s0"]) == 1
    assert order_violations(["t1s1", "t2s0", "t1s0", "greeting"]) == 1  # turns are independent; free names ignored


def test_percentiles_of_nothing_are_none() -> None:
    assert percentiles([]) == {"p50": None, "p95": None, "p99": None}
    assert percentiles([10.0, 20.0])["p50"] == 15.0


async def test_three_calls_complete_in_order_without_errors() -> None:
    report = await run_load(calls=3, ramp_s=1.0, duration_s=4.0, url=None, workers=2, baseline_s=1.0)

    assert REPORT_KEYS <= report.keys()
    assert report["calls"] == 3
    assert report["completed"] == 3
    assert report["errors"] == {}
    assert report["order_violations"] == 0
    assert report["turns"] >= 3  # every caller spoke and was answered at least once
    assert set(report["first_audio_ms"]) == {"p50", "p95", "p99"}
    assert report["first_audio_ms"]["p50"] > 0
    assert report["baseline_first_audio_ms"] is not None and report["baseline_first_audio_ms"] > 0
    assert report["server_rss_mb"] > 0 and report["server_cpu_pct"] is not None
    growth = max(0.0, report["server_rss_mb"] - report["server_idle_rss_mb"])
    assert report["rss_per_call_mb"] == pytest.approx(growth / 3, abs=0.05)  # the figures agree (0.1 MB rounding)
    assert report["recorder"] is True
    assert report["recorded_calls"] == 4  # the baseline call and the three, every one stored
    assert report["generator_workers"] == 2
    assert report["server_event_loop"] == "uvloop"  # the loop hanmadi serve runs on (uvicorn's auto choice)
    machine = report["machine_cpu"]  # what the whole machine did meanwhile: shares of all its cores
    assert set(machine) == {"busy_pct", "idle_pct", "steal_pct"}
    assert machine["busy_pct"] > 0 and sum(machine.values()) == pytest.approx(100, abs=0.2)


def test_machine_share_splits_the_cores_time_into_busy_idle_and_stolen() -> None:
    # user nice system idle iowait irq softirq steal, in ticks
    before = [100, 0, 50, 1000, 0, 0, 0, 10]
    after = [400, 0, 150, 1400, 100, 0, 0, 110]  # +300 user +100 system +400 idle +100 iowait +100 steal
    assert machine_share(before, after) == {"busy_pct": 40.0, "idle_pct": 50.0, "steal_pct": 10.0}
    assert machine_share(None, after) is None and machine_share(after, after) is None
