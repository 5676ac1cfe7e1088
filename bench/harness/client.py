"""A small HTTP/1.1 load client for misses: each URL once, latency per request.

wrk loops over its URLs for a fixed time, which would turn late misses into
hits; this client sends every URL at most once from ``c`` keep-alive
connections and stops starting requests at the deadline. It is raw asyncio
streams, not httpx, so the client costs little CPU on a 2-core machine.
Run as its own process: ``python -m bench.harness.client``; prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections import Counter

from .stats import summary


async def _fetch(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str,
                 target: str) -> tuple[int, dict[str, str], int]:
    writer.write(f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        size = 0
        while True:
            chunk = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(chunk + 2)
            size += chunk
            if chunk == 0:
                break
    else:
        size = int(headers.get("content-length", "0"))
        await reader.readexactly(size)
    return status, headers, size


async def run(host: str, ports: list[int], targets: list[str], concurrency: int, duration: float,
              timeout: float) -> dict[str, object]:
    todo = iter(targets)
    latencies: list[float] = []
    tiers: Counter[str] = Counter()
    statuses: Counter[int] = Counter()
    sizes: list[int] = []
    timing: Counter[str] = Counter()  # Server-Timing durations summed (ours' misses), ms
    errors = 0
    start = time.perf_counter()
    deadline = start + duration

    async def connection(port: int) -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            for target in todo:
                if time.perf_counter() >= deadline:
                    return
                t0 = time.perf_counter()
                try:
                    status, headers, size = await asyncio.wait_for(
                        _fetch(reader, writer, f"{host}:{port}", target), timeout)
                except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                    errors += 1
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    continue
                statuses[status] += 1
                if status != 200:
                    errors += 1
                    continue
                latencies.append(time.perf_counter() - t0)
                tiers[headers.get("x-imgproxy-tier", "-")] += 1
                sizes.append(size)
                for part in headers.get("server-timing", "").split(","):
                    name, _, dur = part.strip().partition(";dur=")
                    if dur:
                        timing[name] += float(dur)
        finally:
            writer.close()

    # Connection i goes to port i mod n: several instances of one server share the load.
    await asyncio.gather(*(connection(ports[i % len(ports)]) for i in range(concurrency)))
    result: dict[str, object] = dict(summary(latencies, time.perf_counter() - start, errors))
    result["tiers"] = dict(tiers)
    result["statuses"] = {str(k): v for k, v in statuses.items()}
    result["mean_bytes"] = round(sum(sizes) / len(sizes)) if sizes else 0
    if timing and latencies:
        result["server_timing_ms"] = {k: round(v / len(latencies), 1) for k, v in timing.items()}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.harness.client")
    parser.add_argument("--port", required=True, help="a port, or several: 8001,8002")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--targets", required=True, help="file: one path?query a line")
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True, help="start no request after this")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    with open(args.targets) as f:
        targets = [line.strip() for line in f if line.strip()]
    ports = [int(p) for p in args.port.split(",")]
    result = asyncio.run(run(args.host, ports, targets, args.concurrency, args.duration,
                             args.timeout))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
