"""What one hit costs in process: the whole ASGI app, no sockets, no uvicorn.

``python -m bench.profilers.hit_cost [--profile memory|store] [--rounds 5] [--calls 10000]``
builds the app as ``imgproxy serve`` would (access log on, text lines to
/dev/null, multiprocess metrics), renders 16 WebP variants once, then times ``rounds`` batches of
``calls`` hits through ``App.__call__`` per tier (the store tier with the
memory tier off) and prints the best batch's microseconds per hit as JSON.
``--profile`` runs one tier under cProfile instead and prints the top frames.

Run from a checkout's root to measure that checkout's ``imgproxy/``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness.inputs import cold_files, make_photo, photo_sources
from bench.harness.paths import BENCH_PRESETS

KEY = "hit-cost-key-0123456789abcdef0123456789"


def _originals(root: Path, count: int) -> list[str]:
    """``count`` ids over four ~2 MP photos, as the hit bench's (bench/harness/inputs.py)."""
    root.mkdir(parents=True, exist_ok=True)
    photos = []
    for i, path in enumerate(photo_sources()[:4]):
        photos.append(root / f"photo{i}.jpg")
        make_photo(path, photos[-1])
    return [f"h/{path.stem}" for path in cold_files(root / "h", photos, count)]


def _scope(path: str) -> dict[str, Any]:
    raw, _, query = path.partition("?")
    return {"type": "http", "http_version": "1.1", "method": "GET", "scheme": "http", "path": raw,
            "raw_path": raw.encode(), "query_string": query.encode(), "root_path": "",
            "headers": [(b"host", b"127.0.0.1:8080"), (b"user-agent", b"wrk"), (b"accept", b"*/*")],
            "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8080)}


async def _receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


class _Sink:
    def __init__(self) -> None:
        self.status = 0
        self.tier = b""

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
            for name, value in message["headers"]:
                if name == b"x-imgproxy-tier":
                    self.tier = value


async def _tier(work: Path, memory_mb: int, paths: list[str], rounds: int, calls: int,
                profile: bool) -> float:
    env = {"IMGPROXY_ENV": "development", "IMGPROXY_KEYS": KEY, "IMGPROXY_LOG_FORMAT": "text",
           "IMGPROXY_ORIGINALS": (work / "originals").as_uri(), "IMGPROXY_VARIANTS": (work / "variants").as_uri(),
           "IMGPROXY_PRESETS": str(BENCH_PRESETS), "IMGPROXY_RENDER_MODE": "thread",
           "IMGPROXY_MEMORY_CACHE_MB": str(memory_mb), "IMGPROXY_LOG_LEVEL": "warning"}
    os.environ.update(env)
    from imgproxy.config import load_settings
    from imgproxy.web.app import create_app

    app = create_app(load_settings())
    async with app.lifespan(app.starlette):  # type: ignore[arg-type]
        scopes = [_scope(p) for p in paths]
        sink = _Sink()
        for _ in range(2):  # the first pass renders (or reads the store), the second is warm
            for s in scopes:
                await app(dict(s), _receive, sink)
                assert sink.status == 200, sink.status
        want = b"memory" if memory_mb else b"store"
        assert sink.tier == want, (sink.tier, want)
        n = len(scopes)
        best = float("inf")
        profiler = cProfile.Profile() if profile else None
        for _ in range(rounds):
            batch = [dict(scopes[i % n]) for i in range(calls)]  # uvicorn makes a fresh scope per request
            if profiler:
                profiler.enable()
            t0 = time.perf_counter()
            for s in batch:
                await app(s, _receive, sink)
            elapsed = time.perf_counter() - t0
            if profiler:
                profiler.disable()
            best = min(best, elapsed / calls)
        app._asgi.lines.flush()
        if profiler:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
            print(out.getvalue())
    return best * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profilers.hit_cost")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--profile", choices=("memory", "store"))
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hit-cost-"))
    # As under ``imgproxy serve``: metrics in files shared by the server processes
    # (each increment is a locked write to a memory-mapped file). Set before
    # imgproxy.metrics is imported.
    (work / "metrics").mkdir()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(work / "metrics")
    from imgproxy import sign_url

    # Access lines go to stderr as the server writes them; keep them off the terminal.
    devnull = os.open(os.devnull, os.O_WRONLY)
    saved = os.dup(2)
    try:
        ids = _originals(work / "originals", 16)
        paths = [sign_url(KEY, "fit512", i, "webp") for i in ids]
        out = {}
        for tier, memory_mb in (("memory", 256), ("store", 0)):
            if args.profile and tier != args.profile:
                continue
            os.dup2(devnull, 2)
            try:
                us = asyncio.run(_tier(work, memory_mb, paths, args.rounds, args.calls, bool(args.profile)))
            finally:
                os.dup2(saved, 2)
            out[f"{tier}_us"] = round(us, 2)
        json.dump(out, sys.stdout)
        print()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
