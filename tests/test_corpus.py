"""The whole shared corpus through a running server in process mode.

Every file (corrupt/ and bomb/ included) x 3 presets x 4 formats: only 200 or
4xx, never a 5xx; /healthz answers throughout; the server's process tree
(server plus render workers) stays under :data:`RSS_BOUND` while the bombs
are requested, and under :data:`RSS_BOUND_ALL` for the rest.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
from conftest import TESTIMAGES, Server, descendants, start_server

PRESETS = ("thumbnail", "thumb-square", "preview")
FORMATS = ("webp", "avif", "jpg", "png")
CONCURRENCY = 6
#: The server and its render workers while only bombs are requested.
RSS_BOUND = 600 * 1024 * 1024
#: ... and over the whole corpus: a legitimate 20 MP AVIF has no shrink-on-load
#: and takes ~500 MB to decode, and two render at once.
RSS_BOUND_ALL = 1400 * 1024 * 1024
MAGIC = {
    "webp": lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP",
    "avif": lambda b: b[4:8] == b"ftyp",
    "jpg": lambda b: b[:3] == b"\xff\xd8\xff",
    "png": lambda b: b[:8] == b"\x89PNG\r\n\x1a\n",
}


def tree_rss(root: int) -> int:
    """Resident bytes of ``root`` and all its descendants, from /proc."""
    total = 0
    for pid in (root, *descendants(root)):
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except OSError:
            pass
    return total


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.done = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            self.peak = max(self.peak, tree_rss(self.pid))


def load_corpus(originals: Path) -> dict[str, Path]:
    ids = {}
    for path in sorted(TESTIMAGES.rglob("*")):
        if not path.is_file() or path.parent == TESTIMAGES:
            continue  # README.md, MANIFEST.tsv
        id = f"{path.parent.name}/{re.sub(r'[^A-Za-z0-9._-]', '_', path.name)}"
        target = originals / id  # stored under its full name: the id's own extension
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        ids[id] = path
    return ids


@pytest.mark.slow
@pytest.mark.timeout(420)
def test_every_corpus_file_is_a_200_or_a_4xx(tmp_path: Path) -> None:
    if not TESTIMAGES.is_dir():
        pytest.skip("test corpus missing")
    originals = tmp_path / "originals"
    ids = load_corpus(originals)
    bombs = sorted(id for id in ids if id.startswith("bomb/"))
    others = sorted(id for id in ids if not id.startswith("bomb/"))
    server = start_server(tmp_path, originals=originals, env={"IMGPROXY_RENDER_MODE": "process"})
    sampler = RssSampler(server.proc.pid)
    sampler.start()
    try:
        # Bombs first and alone, so their peak is theirs; then everything else.
        bomb_figures = asyncio.run(hammer(server, bombs))
        bomb_peak, sampler.peak = sampler.peak, 0
        figures = asyncio.run(hammer(server, others))
    finally:
        sampler.done.set()
        sampler.join()
        log = server.logs()
        server.stop()
    figures = merge(bomb_figures, figures)
    statuses: Counter[int] = figures["statuses"]
    figures.update(files=len(ids), bomb_peak_rss_mb=round(bomb_peak / 2**20, 1),
                   peak_rss_mb=round(max(bomb_peak, sampler.peak) / 2**20, 1))
    print("\ncorpus:", json.dumps({k: (dict(v) if isinstance(v, Counter) else v)
                                   for k, v in figures.items() if k != "failures"}))
    assert figures["requests"] == len(ids) * len(PRESETS) * len(FORMATS)
    assert not figures["failures"], figures["failures"][:20]
    assert all(200 <= s < 500 and s != 304 for s in statuses), statuses
    assert figures["healthz_failures"] == 0 and figures["healthz_checks"] > 10
    assert bomb_peak < RSS_BOUND, f"bombs: peak RSS {bomb_peak / 2**20:.0f} MiB"
    assert sampler.peak < RSS_BOUND_ALL, f"corpus: peak RSS {sampler.peak / 2**20:.0f} MiB"
    assert "Traceback" not in log, log[-3000:]
    assert not list(server.variants.rglob(".tmp-*")), "partial variant left behind"


def merge(a: dict[str, object], b: dict[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for key in a:
        x, y = a[key], b[key]
        if isinstance(x, (Counter, list)):
            out[key] = x + y  # type: ignore[operator]
        elif key == "healthz_slowest_s":
            out[key] = max(x, y)  # type: ignore[type-var]
        else:
            out[key] = x + y  # type: ignore[operator]
    return out


async def hammer(server: Server, ids: list[str]) -> dict[str, object]:
    statuses: Counter[int] = Counter()
    by_folder: Counter[str] = Counter()
    failures: list[str] = []
    health = {"checks": 0, "failures": 0, "slowest": 0.0}
    attempts = 0
    work = [(id, preset, fmt) for id in ids for preset in PRESETS for fmt in FORMATS]
    queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    done = asyncio.Event()

    async with httpx.AsyncClient(timeout=120) as client:

        async def worker() -> None:
            nonlocal attempts
            while not queue.empty():
                id, preset, fmt = queue.get_nowait()
                attempts += 1
                try:
                    r = await client.get(server.url(preset, id, fmt))
                except httpx.HTTPError as exc:
                    failures.append(f"{id} {preset} {fmt}: {exc!r}")
                    continue
                statuses[r.status_code] += 1
                if r.status_code >= 500:
                    failures.append(f"{id} {preset} {fmt}: {r.status_code} {r.text[:200]}")
                elif r.status_code == 200:
                    by_folder[id.split("/")[0] + ":200"] += 1
                    if r.headers["content-type"] != f"image/{'jpeg' if fmt == 'jpg' else fmt}" \
                            or not MAGIC[fmt](r.content):
                        failures.append(f"{id} {preset} {fmt}: not a {fmt}")
                else:
                    by_folder[id.split("/")[0] + f":{r.status_code}"] += 1
                    body = r.json()
                    if "error" not in body or (r.status_code == 413 and "limit" not in body):
                        failures.append(f"{id} {preset} {fmt}: error body {body}")

        async def healthz() -> None:
            while not done.is_set():
                started = time.perf_counter()
                try:
                    r = await client.get(server.base_url + "/healthz", timeout=10)
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                health["checks"] += 1
                health["failures"] += not ok
                health["slowest"] = max(health["slowest"], time.perf_counter() - started)
                await asyncio.sleep(0.5)

        started = time.perf_counter()
        checker = asyncio.ensure_future(healthz())
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        done.set()
        await checker
        elapsed = time.perf_counter() - started

    return {"requests": attempts,
            "statuses": statuses, "by_folder": by_folder, "failures": failures,
            "healthz_checks": health["checks"], "healthz_failures": health["failures"],
            "healthz_slowest_s": round(health["slowest"], 3), "seconds": round(elapsed, 1)}
