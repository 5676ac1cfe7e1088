"""Latency at a set request rate: wrk with a pause between requests.

wrk's own runs keep every connection busy, so their latencies are those of a
saturated server. Here each of C keep-alive connections waits ``PAUSE_MS``
after a response before its next request (bench/wrk_paced.lua), which paces
the load at about C * 1000 / (PAUSE_MS + latency) requests/s. A short probe
run measures the rate that C gives, C is scaled to the asked rate, and the
measured run reports the rate reached beside its latencies.

A Python open-loop client was tried first: at ~10,000 requests/s it needed a
core of its own on this 2-core machine and fell behind (p50 in the hundreds
of ms, all of it in the client). wrk costs about a tenth of that. The price
is a closed loop: a server stall delays each connection's next request
instead of piling requests up, so a stall counts once per connection.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .wrk import _parse

LUA = Path(__file__).with_name("wrk_paced.lua")
PAUSE_MS = 2
PROBE_S = 2


def run(ports: tuple[int, ...], paths_file: Path, rate: float, duration: float) -> dict:
    """``rate`` requests/s for ``duration`` s: wrk's p50/p99/max and the rate reached."""
    connections = max(1, round(rate * PAUSE_MS / 1000))
    probe = _wrk(ports[0], paths_file, connections, PROBE_S)
    if probe["rps"]:
        connections = max(1, round(connections * rate / probe["rps"]))
    out = _wrk(ports[0], paths_file, connections, duration)
    out.update(rate=round(rate), connections=connections, pause_ms=PAUSE_MS)
    return out


def _wrk(port: int, paths_file: Path, connections: int, duration: float) -> dict:
    seconds = max(1, round(duration))
    done = subprocess.run(
        ["wrk", f"-t{min(2, connections)}", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s",
         "-s", str(LUA), f"http://127.0.0.1:{port}", "--", str(paths_file), str(PAUSE_MS)],
        capture_output=True, text=True, timeout=seconds + 60)
    r = _parse(done.stdout)
    ok = r["requests"] - r["status_errors"]
    return {"requests": r["requests"], "errors": r["errors"] + r["status_errors"],
            "rps": round(ok / (r["duration_us"] / 1e6), 1) if ok else 0.0,
            "p50_ms": round(r["p50_us"] / 1000, 3), "p99_ms": round(r["p99_us"] / 1000, 3),
            "max_ms": round(r["max_us"] / 1000, 3)}
