"""Fault soak: Zipf traffic with hostile originals, worker kills, an S3 pause and a
read-only store, against real servers on 127.0.0.1 (``make soak``; minutes, not CI).

    python -m bench.soak [--seconds 150] [--clients 16]

Two servers: ``s3`` (originals and variants on moto's S3) and ``local`` (a
folder of originals, variants on a tmpfs, covered by a read-only one halfway through).
The same originals in both: corpus photos, every file of the corpus's
``bomb/``, ``corrupt/`` and ``svg/``, a 1 x 99,000,000 PNG and an SVG of
nested ``<use>``. Every few seconds one fault: SIGKILL a random render
worker, or SIGSTOP moto for 3 s. It reports answers by status (a 500 is a
bug; 503/504 are what the faults are allowed to cause), peak RSS per process,
and per server the renders counted against the distinct variants served.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from imgproxy import sign_url

from .harness.memory import rss
from .harness.paths import CONFIG_PRESETS, MAIN, TESTIMAGES
from .harness.procs import children
from .harness.servers import BENCH_KEY, Server, free_port, running

PRESETS = ("thumbnail", "web", "small", "thumb-square")
FORMATS = ("webp", "jpg", "avif", "png")


def originals(root: Path) -> list[str]:
    """Copy the corpus into ``root``; the ids, hostile ones included."""
    ids = []
    for path in sorted(TESTIMAGES.rglob("*")):
        hostile = path.parent.name in ("bomb", "corrupt", "svg")
        if not path.is_file() or path.parent == TESTIMAGES or (not hostile and path.stat().st_size > 4 << 20):
            continue
        id = f"{path.parent.name}/{re.sub(r'[^A-Za-z0-9._-]', '_', path.name)}"
        (root / id).parent.mkdir(parents=True, exist_ok=True)
        (root / id).write_bytes(path.read_bytes())
        ids.append(id)
    sys.path.insert(0, str(MAIN / "tests"))
    from test_cost import tall_png, use_nesting  # the same hostile files the tests use

    (root / "gen").mkdir(exist_ok=True)
    tall_png(root / "gen" / "tall.png")
    (root / "gen" / "use.svg").write_bytes(use_nesting())
    return [*ids, "gen/tall.png", "gen/use.svg"]


class Peaks(threading.Thread):
    """Peak RSS of each server process, of its largest render worker, and of moto."""

    def __init__(self, servers: dict[str, int], moto: int) -> None:
        super().__init__(daemon=True)
        self.servers, self.moto = servers, moto
        self.peak: dict[str, int] = collections.defaultdict(int)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.25):
            self.peak["moto"] = max(self.peak["moto"], rss(self.moto) or 0)
            by_parent = children()
            for name, pid in self.servers.items():
                self.peak[f"{name} server"] = max(self.peak[f"{name} server"], rss(pid) or 0)
                for child in by_parent.get(pid, ()):
                    self.peak[f"{name} worker (largest)"] = max(self.peak[f"{name} worker (largest)"],
                                                                 rss(child) or 0)


async def traffic(bases: dict[str, str], ids: list[str], seconds: float, clients: int,
                  served: dict[str, set[str]], statuses: collections.Counter[tuple[str, int]]) -> None:
    rng = random.Random(16)
    order = ids[:]
    rng.shuffle(order)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(len(order))]
    deadline = time.monotonic() + seconds

    async def client(client: httpx.AsyncClient) -> None:
        while time.monotonic() < deadline:
            name = rng.choice(list(bases))
            id = rng.choices(order, weights)[0].rsplit(".", 1)[0]
            variant = f"{rng.choices(PRESETS, (8, 4, 2, 1))[0]}/{id}.{rng.choices(FORMATS, (8, 4, 2, 1))[0]}"
            preset, rest = variant.split("/", 1)
            id, fmt = rest.rsplit(".", 1)
            try:
                r = await client.get(sign_url(BENCH_KEY, preset, id, fmt, bases[name]))
                status = r.status_code
            except httpx.HTTPError:
                status = 0  # no answer at all
            statuses[(name, status)] += 1
            if status == 200:
                served[name].add(variant)

    async with httpx.AsyncClient(timeout=60) as http:
        await asyncio.gather(*(client(http) for _ in range(clients)))


def chaos(servers: dict[str, int], moto: Server, store: Path, seconds: float, log: list[str]) -> None:
    rng = random.Random(7)
    started = time.monotonic()
    read_only = False
    while (elapsed := time.monotonic() - started) < seconds - 5:
        time.sleep(5)
        if not read_only and elapsed > seconds / 2:
            read_only = True
            # Remounting the store itself is refused while lock files are open:
            # a read-only tmpfs goes over the variant folder instead.
            done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(store / "v")],
                                  capture_output=True)
            log.append(f"{elapsed:5.0f}s local variant store read-only"
                       + ("" if done.returncode == 0 else f" FAILED: {done.stderr.decode().strip()}"))
        if rng.random() < 0.6:
            name = rng.choice(list(servers))
            workers = children().get(servers[name], [])
            if workers:
                victim = rng.choice(workers)
                with contextlib.suppress(ProcessLookupError):
                    os.kill(victim, signal.SIGKILL)
                log.append(f"{elapsed:5.0f}s SIGKILL {name} render worker {victim}")
        else:
            os.kill(moto.pid, signal.SIGSTOP)
            time.sleep(3)
            os.kill(moto.pid, signal.SIGCONT)
            log.append(f"{elapsed:5.0f}s S3 paused 3 s (SIGSTOP/SIGCONT moto)")


def renders(base: str) -> int:
    text = httpx.get(base + "/metrics", timeout=10).text
    return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("imgproxy_renders_total{")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=150)
    parser.add_argument("--clients", type=int, default=16)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="imgproxy-soak-"))
    print(f"soak: {args.seconds:g}s, {args.clients} clients, logs in {work}")
    ids = originals(work / "originals")
    store = work / "local-variants"
    store.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(store)],
                             capture_output=True).returncode == 0
    (store / "v").mkdir()
    stack = contextlib.ExitStack()
    try:
        s3_env = {"AWS_ACCESS_KEY_ID": "soak", "AWS_SECRET_ACCESS_KEY": "soak", "AWS_DEFAULT_REGION": "us-east-1",
                  "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull}
        moto_port = free_port()
        moto = stack.enter_context(running(
            "moto", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(moto_port)],
            {**os.environ, **s3_env}, MAIN, work / "moto.log", moto_port, "/moto-api/"))
        endpoint = moto.base
        import boto3

        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="soak", aws_secret_access_key="soak")
        s3.create_bucket(Bucket="soak")
        for id in ids:
            s3.put_object(Bucket="soak", Key=f"o/{id}", Body=(work / "originals" / id).read_bytes())
        common = {**os.environ, **s3_env, "IMGPROXY_KEYS": BENCH_KEY, "IMGPROXY_LOG_LEVEL": "warning",
                  "IMGPROXY_PRESETS": str(CONFIG_PRESETS), "IMGPROXY_RENDER_THREADS": "2",
                  "IMGPROXY_RENDER_TIMEOUT": "10", "IMGPROXY_DOWNLOAD_TIMEOUT": "10",
                  "IMGPROXY_S3_TIMEOUT": "2", "IMGPROXY_S3_MAX_ATTEMPTS": "2", "IMGPROXY_S3_LEASE_SECONDS": "25",
                  "IMGPROXY_S3_ENDPOINT_URL": endpoint, "IMGPROXY_DEV_KEY_FILE": str(work / "dev-key")}
        common.pop("PROMETHEUS_MULTIPROC_DIR", None)
        setups = {"s3": ("s3://soak/o", "s3://soak/v"),
                  "local": ((work / "originals").as_uri(), (store / "v").as_uri())}
        bases, pids = {}, {}
        for name, (orig, variants) in setups.items():
            port = free_port()
            server = stack.enter_context(running(
                name, [sys.executable, "-m", "imgproxy", "serve", "--port", str(port)],
                {**common, "IMGPROXY_ORIGINALS": orig, "IMGPROXY_VARIANTS": variants}, MAIN,
                work / f"{name}.log", port, "/healthz"))
            bases[name], pids[name] = server.base, server.pid
        peaks = Peaks(pids, moto.pid)
        peaks.start()
        served: dict[str, set[str]] = {name: set() for name in bases}
        statuses: collections.Counter[tuple[str, int]] = collections.Counter()
        faults: list[str] = []
        if mounted:
            chaos_thread = threading.Thread(target=chaos, args=(pids, moto, store, args.seconds, faults), daemon=True)
        else:
            faults.append("no tmpfs mount here: the read-only store fault is skipped")
            chaos_thread = threading.Thread(target=chaos, args=(pids, moto, work, args.seconds, faults), daemon=True)
        chaos_thread.start()
        started = time.monotonic()
        asyncio.run(traffic(bases, ids, args.seconds, args.clients, served, statuses))
        elapsed = time.monotonic() - started
        chaos_thread.join()
        peaks.done.set()
        print("\nfaults:")
        for line in faults:
            print("  " + line)
        total = sum(statuses.values())
        print(f"\n{total} requests in {elapsed:.0f}s ({total / elapsed:.0f}/s) over {len(ids)} originals")
        for name in bases:
            counts = {s: n for (server, s), n in sorted(statuses.items()) if server == name}
            print(f"  {name:6} {counts}")
        errors = sum(n for (_, s), n in statuses.items() if s >= 500 or s == 0)
        bugs = sum(n for (_, s), n in statuses.items() if s == 500)
        print(f"5xx (or no answer): {errors}, of which 500: {bugs}")
        print("peak RSS:")
        for key, value in sorted(peaks.peak.items()):
            print(f"  {key:28} {value / 2**20:7.0f} MiB")
        print("renders / distinct variants served 200:")
        for name, base in bases.items():
            print(f"  {name:6} {renders(base)} / {len(served[name])}")
        return 1 if bugs else 0
    finally:
        stack.close()
        if mounted:
            subprocess.run(["umount", "-l", str(store / "v")], capture_output=True, check=False)
            subprocess.run(["umount", "-l", str(store)], check=False)


if __name__ == "__main__":
    sys.exit(main())
