"""What process isolation costs against threads, on the same workload.

40 misses (each its own original name: a hard link to one ~2 MP JPEG) rendered
to 1200px WebP through a real server, 2 at a time, with ``render_mode=thread``
and ``render_mode=process`` (2 renders in flight either way). Rounds alternate
the modes so drift in machine load hits both alike; each round is a fresh
server and variants folder. Prints one JSON object; ``ratio`` is
process / thread wall time (median over rounds).

    python -m bench.profilers.isolation [--rounds 5] [--renders 40] [--concurrency 2]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.harness.inputs import PHOTO_SIZE, make_photo
from bench.harness.paths import CONFIG_PRESETS, LARGE
from bench.harness.servers import BENCH_KEY, ours
from imgproxy import sign_url

PRESET, FORMAT = "web", "webp"  # 1200 x 1200 box in config/presets.toml


async def hammer(base: str, ids: list[str], concurrency: int) -> tuple[float, list[int]]:
    todo = list(ids)
    statuses: list[int] = []
    async with httpx.AsyncClient(timeout=120) as client:

        async def one() -> None:
            while todo:
                id = todo.pop()
                r = await client.get(sign_url(BENCH_KEY, PRESET, id, FORMAT, base))
                statuses.append(r.status_code)

        started = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(concurrency)))
        return time.perf_counter() - started, statuses


def run(mode: str, work: Path, photo: Path, round_: int, renders: int, concurrency: int) -> float:
    originals = work / f"{mode}-{round_}" / "originals"
    originals.mkdir(parents=True)
    ids = []
    warm = 2 * concurrency
    for i in range(renders + warm):
        os.link(photo, originals / f"p{i}.jpg")
        ids.append(f"p{i}")
    env = {"IMGPROXY_RENDER_MODE": mode, "IMGPROXY_RENDER_THREADS": str(concurrency),
           "IMGPROXY_MEMORY_CACHE_MB": "0"}
    with ours(originals, originals.parent / "variants", CONFIG_PRESETS,
              originals.parent / "server.log", workers=1, extra_env=env) as server:
        # Warm-up: the first render in each thread/worker loads libvips' codecs.
        asyncio.run(hammer(server.base, ids[:warm], concurrency))
        seconds, statuses = asyncio.run(hammer(server.base, ids[warm:], concurrency))
    if statuses.count(200) != renders:
        sys.exit(f"{mode}: expected {renders} x 200, got {sorted(set(statuses))}")
    return seconds


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--renders", type=int, default=40)
    p.add_argument("--concurrency", type=int, default=2)
    args = p.parse_args(argv)
    times: dict[str, list[float]] = {"thread": [], "process": []}
    with tempfile.TemporaryDirectory(prefix="imgproxy-isolation-") as tmp:
        work = Path(tmp)
        photo = work / "photo.jpg"
        make_photo(LARGE, photo)
        for round_ in range(args.rounds):
            order = ("thread", "process") if round_ % 2 == 0 else ("process", "thread")
            for mode in order:
                times[mode].append(run(mode, work, photo, round_, args.renders, args.concurrency))
    median = {mode: statistics.median(values) for mode, values in times.items()}
    print(json.dumps({
        "load_average": os.getloadavg()[0],
        "workload": f"{args.renders} x {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} JPEG -> {PRESET} {FORMAT}, "
                    f"concurrency {args.concurrency}, {os.cpu_count()} cores",
        "seconds": {mode: [round(t, 3) for t in values] for mode, values in times.items()},
        "median_seconds": {mode: round(t, 3) for mode, t in median.items()},
        "renders_per_second": {mode: round(args.renders / t, 2) for mode, t in median.items()},
        "ratio": round(median["process"] / median["thread"], 3),
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
