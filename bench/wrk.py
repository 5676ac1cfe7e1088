"""wrk for hits: fixed duration, keep-alive, cycling over a list of warm URLs.

wrk is C and costs far less CPU per request than any Python client, which
matters when nginx is the thing being measured on a 2-core machine. A server
with several ports (thumbor, one process each) gets one wrk per port, run at
the same time with the connections split between them, and the sums.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

LUA = Path(__file__).with_name("wrk.lua")


def run(ports: tuple[int, ...], paths_file: Path, concurrency: int,
        duration: float) -> dict[str, float]:
    seconds = max(1, round(duration))  # wrk takes whole seconds
    ports = ports[:concurrency]
    split = [concurrency // len(ports) + (i < concurrency % len(ports)) for i in range(len(ports))]
    threads = max(1, 2 // len(ports))  # two wrk threads in all: wrk shares the cores with the server
    procs = [subprocess.Popen(
        ["wrk", f"-t{min(threads, c)}", f"-c{c}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(LUA), f"http://127.0.0.1:{port}", "--", str(paths_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for port, c in zip(ports, split)]
    parts = [_parse(p.communicate(timeout=seconds + 60)[0]) for p in procs]
    requests = sum(r["requests"] for r in parts)
    ok = requests - sum(r["status_errors"] for r in parts)
    elapsed = max(r["duration_us"] for r in parts) / 1e6
    return {
        "requests": requests,
        "errors": sum(r["errors"] + r["status_errors"] for r in parts),
        "elapsed_s": round(elapsed, 3),
        "rps": round(sum((r["requests"] - r["status_errors"]) / (r["duration_us"] / 1e6)
                         for r in parts), 1) if ok else 0.0,
        # Across several wrk processes: the request-weighted p50 and the worst p99.
        "p50_ms": round(sum(r["p50_us"] * r["requests"] for r in parts) / max(1, requests) / 1000, 3),
        "p99_ms": round(max(r["p99_us"] for r in parts) / 1000, 3),
        "mean_bytes": round(sum(r["bytes"] for r in parts) / max(1, requests)),
    }


def _parse(out: str) -> dict:
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    return json.loads(line.removeprefix("WRKJSON "))
