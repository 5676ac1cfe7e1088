"""Latency summaries shared by every load source, so all rows mean the same."""

from __future__ import annotations


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
