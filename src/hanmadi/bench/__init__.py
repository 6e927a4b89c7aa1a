"""hanmadi.bench: benchmarks that print JSON (strategies, segmenter, e2e, stt, knowledge, speakable, load)."""

from __future__ import annotations


def percentile(values: list[float], p: float) -> float | None:
    """The p-th percentile (0–100) of ``values``, interpolated between ranks and rounded to 0.1; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return round(ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo), 1)
