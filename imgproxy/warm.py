"""``imgproxy warm``: pre-render variants by requesting them from a server.

Requests go through the server, so the exactly-once machinery applies and a
warm-up can run beside live traffic or on several machines at once.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

import httpx

from .config import load_settings
from .keys import resolve_keys
from .urls import variant_url


async def _run(urls: list[str], concurrency: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    queue: asyncio.Queue[str] = asyncio.Queue()
    for url in urls:
        queue.put_nowait(url)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            url = queue.get_nowait()
            try:
                r = await client.get(url)
                outcome = r.headers.get("x-imgproxy-tier", str(r.status_code))
                if r.status_code >= 400:
                    print(f"{r.status_code} {url}: {r.text[:200]}", file=sys.stderr)
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
                print(f"error {url}: {exc}", file=sys.stderr)
            counts[outcome] = counts.get(outcome, 0) + 1

    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return counts


def warm(args: argparse.Namespace) -> int:
    ids = [i for i in args.ids if i != "-"]
    if not ids:
        ids = [line.strip() for line in sys.stdin if line.strip()]
    key = resolve_keys(load_settings())[0]
    formats = args.format or ["webp"]
    urls = [variant_url(key, p, i, f, args.base_url) for i in ids for p in args.preset for f in formats]
    started = time.perf_counter()
    counts = asyncio.run(_run(urls, max(1, args.concurrency)))
    took = time.perf_counter() - started
    print(f"warmed {len(ids)} originals, {len(urls)} variants in {took:.2f}s "
          f"({len(ids) / took:.1f} originals/s): {counts}")
    ok = sum(v for k, v in counts.items() if k in ("memory", "store", "render"))
    return 0 if ok == len(urls) else 1
