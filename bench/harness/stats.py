"""Summaries shared by every load source and case, so all rows mean the same: latency
percentiles, peak rates, geometric means, and bytes at equal SSIM on a quality sweep."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile: with 100 samples p99 is the 99th value, not an interpolation."""
    if not sorted_values:
        return float("nan")
    rank = max(1, min(len(sorted_values), round(q / 100 * len(sorted_values) + 0.4999)))
    return sorted_values[rank - 1]


def summary(latencies_s: list[float], elapsed_s: float, errors: int = 0) -> dict[str, float]:
    """requests/s over the wall clock and p50/p99 in milliseconds."""
    ordered = sorted(latencies_s)
    return {
        "requests": len(ordered),
        "errors": errors,
        "elapsed_s": round(elapsed_s, 3),
        "rps": round(len(ordered) / elapsed_s, 2) if elapsed_s > 0 else 0.0,
        "p50_ms": round(percentile(ordered, 50) * 1000, 2),
        "p99_ms": round(percentile(ordered, 99) * 1000, 2),
    }


def peak(by_concurrency: dict) -> float:
    """The best requests/s over the concurrency levels of one contender."""
    return max((r["rps"] for r in by_concurrency.values()), default=0.0)


def geomean(values: list[float]) -> float | None:
    return round(math.exp(statistics.fmean(math.log(v) for v in values)), 3) if values else None


def at_ssim(curve: Iterable[dict], target: float) -> tuple[float, float] | None:
    """(bytes, ms) on a quality sweep's points (``ssim``, ``bytes``, ``ms``) at SSIM ``target``,
    interpolated with log bytes linear in SSIM between neighbours; None outside the sweep."""
    points = sorted((p["ssim"], p["bytes"], p["ms"]) for p in curve)
    for (s0, b0, t0), (s1, b1, t1) in itertools.pairwise(points):
        if s0 <= target <= s1 and s1 > s0:
            f = (target - s0) / (s1 - s0)
            return math.exp(math.log(b0) + f * (math.log(b1) - math.log(b0))), t0 + f * (t1 - t0)
    return None


def ms_per_request(cpu_s: float, run: dict) -> float | None:
    """CPU milliseconds per successful request of ``run``; None when none succeeded."""
    return round(1000 * cpu_s / run["requests"], 1) if run["requests"] else None
