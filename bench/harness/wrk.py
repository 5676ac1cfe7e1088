"""wrk for hits: fixed duration, keep-alive, cycling over a list of warm URLs.

wrk is C and costs far less CPU per request than any Python client, which
matters when nginx is the thing being measured on a 2-core machine. A server
with several ports (thumbor, one process each) gets one wrk per port, run at
the same time with the connections split between them, and the sums (:func:`run`).

Latency at a set request rate (:func:`paced`): wrk's own runs keep every
connection busy, so their latencies are those of a saturated server. There
each of C keep-alive connections waits ``PAUSE_MS`` after a response before
its next request (wrk.lua's pause), which paces the load at about
C * 1000 / (PAUSE_MS + latency) requests/s. A short probe run measures the
rate that C gives, C is scaled to the asked rate, and the measured run
reports the rate reached beside its latencies.

A Python open-loop client was tried first: at ~10,000 requests/s it needed a
core of its own on this 2-core machine and fell behind (p50 in the hundreds
of ms, all of it in the client). wrk costs about a tenth of that. The price
is a closed loop: a server stall delays each connection's next request
instead of piling requests up, so a stall counts once per connection.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

LUA = Path(__file__).with_name("wrk.lua")
PAUSE_MS = 2
PROBE_S = 2


def run(ports: tuple[int, ...], paths_file: Path, concurrency: int,
        duration: float) -> dict[str, float]:
    seconds = max(1, round(duration))  # wrk takes whole seconds
    ports = ports[:concurrency]
    split = [concurrency // len(ports) + (i < concurrency % len(ports)) for i in range(len(ports))]
    threads = max(1, 2 // len(ports))  # two wrk threads in all: wrk shares the cores with the server
    procs = [_start(port, paths_file, min(threads, c), c, seconds) for port, c in zip(ports, split)]
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


def paced(ports: tuple[int, ...], paths_file: Path, rate: float, duration: float) -> dict:
    """``rate`` requests/s for ``duration`` s: wrk's p50/p99/max and the rate reached."""
    connections = max(1, round(rate * PAUSE_MS / 1000))
    probe = _paced_run(ports[0], paths_file, connections, PROBE_S)
    if probe["rps"]:
        connections = max(1, round(connections * rate / probe["rps"]))
    out = _paced_run(ports[0], paths_file, connections, duration)
    out.update(rate=round(rate), connections=connections, pause_ms=PAUSE_MS)
    return out


def _paced_run(port: int, paths_file: Path, connections: int, duration: float) -> dict:
    seconds = max(1, round(duration))
    done = _start(port, paths_file, min(2, connections), connections, seconds, PAUSE_MS)
    r = _parse(done.communicate(timeout=seconds + 60)[0])
    ok = r["requests"] - r["status_errors"]
    return {"requests": r["requests"], "errors": r["errors"] + r["status_errors"],
            "rps": round(ok / (r["duration_us"] / 1e6), 1) if ok else 0.0,
            "p50_ms": round(r["p50_us"] / 1000, 3), "p99_ms": round(r["p99_us"] / 1000, 3),
            "max_ms": round(r["max_us"] / 1000, 3)}


def _start(port: int, paths_file: Path, threads: int, connections: int, seconds: int,
           pause_ms: int | None = None) -> subprocess.Popen[str]:
    pause = [str(pause_ms)] if pause_ms is not None else []
    return subprocess.Popen(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(LUA), f"http://127.0.0.1:{port}", "--", str(paths_file), *pause],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _parse(out: str) -> dict:
    line = next((ln for ln in out.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    return json.loads(line.removeprefix("WRKJSON "))
