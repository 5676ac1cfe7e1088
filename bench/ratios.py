"""Ratios and the pass/fail table against issue 5's targets.

A target compares *peak* throughput: the best requests/s each contender
reached over the concurrency levels, i.e. the capacity of the machine
through that server. Per-concurrency ratios are kept beside it.
"""

from __future__ import annotations

#: (label, numerator, denominator, minimum) per case; ``None`` = no target, shown for context.
MISS_TARGETS = (("ours ÷ bare pyvips", "ours", "bare", {"jpg": 0.95, "webp": 0.95, "avif": 0.95}),
                ("ours ÷ thumbor", "ours", "thumbor", {"jpg": 2.0, "webp": 2.0, "avif": None}))
HIT_TARGETS = (("memory tier ÷ nginx", "ours-memory", "nginx", 0.5),
               ("store tier ÷ nginx", "ours-store", "nginx", 0.5),
               ("memory tier ÷ thumbor hits", "ours-memory", "thumbor-hits", 5.0),
               ("store tier ÷ thumbor hits", "ours-store", "thumbor-hits", 5.0))


def peak(by_concurrency: dict) -> float:
    return max((r["rps"] for r in by_concurrency.values()), default=0.0)


def compute(results: dict) -> dict:
    rows = []
    per_concurrency: dict = {}
    for fmt, targets in results.get("miss", {}).items():
        for label, num, den, minimum in MISS_TARGETS:
            rows.append(_row(f"miss {fmt}: {label}", targets.get(num), targets.get(den),
                             minimum.get(fmt)))
            if num in targets and den in targets:
                per_concurrency[f"miss {fmt}: {label}"] = {
                    c: _ratio(targets[num][c]["rps"], targets[den][c]["rps"])
                    for c in targets[num] if c in targets[den]}
    hits = results.get("hit", {})
    for label, num, den, minimum in HIT_TARGETS:
        rows.append(_row(f"hit webp: {label}", hits.get(num), hits.get(den), minimum))
    rows += (results.get("encoding") or {}).get("targets", [])  # bench/encoding.py: ≤ or ≥ per row
    rows += (results.get("pool") or {}).get("targets", [])  # bench/pool.py: pinned row ÷ best
    return {"targets": rows, "per_concurrency": per_concurrency}


def cpu_per_request(by_concurrency: dict, key: str) -> float | None:
    """CPU per request over all levels: total CPU / total requests."""
    runs = [r for r in by_concurrency.values() if r.get(key) is not None and r["requests"]]
    total = sum(r[key] * r["requests"] for r in runs)
    count = sum(r["requests"] for r in runs)
    return total / count if count else None


def _row(name: str, num: dict | None, den: dict | None, minimum: float | None) -> dict:
    if not num or not den:
        return {"case": name, "ratio": None, "target": minimum, "pass": None,
                "why": "not measured (a contender is missing)"}
    value = _ratio(peak(num), peak(den))
    key = "cpu_ms_per_req" if name.startswith("miss") else "cpu_us_per_req"
    ours_cpu, ref_cpu = cpu_per_request(num, key), cpu_per_request(den, key)
    return {"case": name, "ratio": value, "target": minimum, "ours_rps": peak(num),
            "ref_rps": peak(den), "pass": None if minimum is None or value is None else value >= minimum,
            # The same comparison by CPU per request, which other load on the machine hardly moves.
            "cpu_ratio": _ratio(ref_cpu, ours_cpu) if ours_cpu and ref_cpu else None,
            "foreign_cpu": max(r.get("foreign_cpu", 0) for r in [*num.values(), *den.values()])}


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None
