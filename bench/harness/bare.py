"""Bare pyvips: our render pipeline in a plain loop, no server. The ceiling for a miss.

Run as its own process (``python -m bench.harness.bare``) so its memory and threads
never mix with the harness. Concurrency c means c threads: libvips releases
the GIL while it decodes, resizes and encodes, as it does in the server.
Prints one JSON object: the same summary as the HTTP client.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from imgproxy.presets import load_presets
from imgproxy.render import Limits, RenderJob, Source, configure, render

from .loop import render_loop
from .stats import summary


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.harness.bare")
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
    start = time.perf_counter()
    latencies, errors, cpu_s = render_loop(args.concurrency, time.monotonic() + args.duration,
                                           lambda: next(todo, None), lambda path: render(job(path)).body)
    result = summary(latencies, time.perf_counter() - start, errors)
    result["cpu_s"] = round(cpu_s, 3)
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
