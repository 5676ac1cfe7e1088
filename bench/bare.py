"""Bare pyvips: our render pipeline in a plain loop, no server. The ceiling for a miss.

Run as its own process (``python -m bench.bare``) so its memory and threads
never mix with the harness. Concurrency c means c threads: libvips releases
the GIL while it decodes, resizes and encodes, as it does in the server.
Prints one JSON object: the same summary as the HTTP client.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import threading
import time

from imgproxy.presets import load_presets
from imgproxy.render import Limits, RenderJob, Source, configure, render

from .stats import summary


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.bare")
    parser.add_argument("--files", required=True, help="JSON list of original paths, one per render")
    parser.add_argument("--presets", required=True)
    parser.add_argument("--preset", default="fit512")
    parser.add_argument("--fmt", required=True)
    parser.add_argument("--concurrency", type=int, required=True)
    parser.add_argument("--duration", type=float, required=True, help="start no render after this")
    parser.add_argument("--warmup", type=int, default=2, help="renders before the clock starts")
    args = parser.parse_args()

    with open(args.files) as f:
        files: list[str] = json.load(f)
    preset = load_presets(args.presets)[args.preset]
    configure()

    def job(path: str) -> RenderJob:
        return RenderJob(Source(path=path), preset, args.fmt, Limits())

    for path in files[: args.warmup]:
        render(job(path))
    todo = iter(files[args.warmup :])
    lock = threading.Lock()
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + args.duration

    def worker() -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            with lock:
                path = next(todo, None)
            if path is None:
                return
            t0 = time.perf_counter()
            try:
                body = render(job(path)).body
                ok = len(body) > 0
            except Exception:
                ok = False
            t1 = time.perf_counter()
            with lock:
                if ok:
                    latencies.append(t1 - t0)
                else:
                    errors += 1

    threads = [threading.Thread(target=worker) for _ in range(args.concurrency)]
    cpu0 = _cpu()
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = summary(latencies, time.perf_counter() - start, errors)
    result["cpu_s"] = round(_cpu() - cpu0, 3)
    json.dump(result, sys.stdout)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # all threads of this process
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    main()
