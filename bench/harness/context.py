"""What every case shares: the profile (full or smoke), the inputs, URL makers, load runners."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from imgproxy import sign_url

from .inputs import Inputs
from .paths import BENCH_PRESETS, MAIN
from .quiet import CpuWatch, wait_quiet
from .servers import BENCH_KEY

PRESET = "fit512"
#: The same numbers as bench/presets.toml's fit512, for thumbor's quality() filter.
QUALITY = {"jpg": 80, "webp": 75, "avif": 65}
THUMBOR_FORMAT = {"jpg": "jpeg", "webp": "webp", "avif": "avif"}


@dataclass(frozen=True)
class Profile:
    name: str
    formats: tuple[str, ...]
    concurrencies: tuple[int, ...]
    miss_duration: float  # seconds; no request starts after this
    miss_cap: int  # at most this many requests (= cold names) per run
    hit_concurrencies: tuple[int, ...]
    hit_duration: float
    hit_urls: int
    memory_requests: int
    memory_concurrency: int
    warm_originals: int
    warm_presets: tuple[str, ...]
    isolation_concurrencies: tuple[int, ...]
    quiet_wait: float  # longest wait for other processes to leave the CPU before one run
    quiet_budget: float  # longest such waiting over the whole bench, so it ends in time
    attempts: int  # runs of a disturbed measurement before keeping the cleanest


FULL = Profile("full", ("jpg", "webp", "avif"), (1, 2, 4, 8), 8.0, 600, (1, 8, 32), 5.0, 64,
               32, 16, 100, ("fit512", "thumb200", "fit1024"), (2, 8), 60.0, 240.0, 2)
SMOKE = Profile("smoke", ("jpg", "webp"), (1,), 0.5, 4, (2,), 1.0, 4,
                4, 2, 3, ("fit512", "thumb200", "fit1024"), (2,), 0.0, 0.0, 1)


@dataclass
class Bench:
    profile: Profile
    inputs: Inputs
    work: Path  # scratch: variants, configs, URL lists
    logs: Path
    workers: int  # server processes for ours, thumbor and nginx alike
    thumbor: bool  # its venv is usable
    nginx: bool
    wrk: bool
    render_mode: str = "thread"  # ours' IMGPROXY_RENDER_MODE, except in the isolation case
    long: bool = False  # --long: the long sweeps too (encoding's full quality sweep)
    notes: list[str] = field(default_factory=list)
    waited: float = 0.0  # seconds spent in quiet()
    _lists: itertools.count = field(default_factory=itertools.count)

    def quiet(self) -> None:
        """Let other processes' work pass before a run, within the bench's waiting budget."""
        left = self.profile.quiet_budget - self.waited
        start = time.monotonic()
        wait_quiet(min(self.profile.quiet_wait, left))
        self.waited += time.monotonic() - start

    def ours_path(self, id: str, fmt: str, preset: str = PRESET) -> str:
        return sign_url(BENCH_KEY, preset, id, fmt)

    @staticmethod
    def thumbor_path(id: str, fmt: str) -> str:
        return (f"/unsafe/fit-in/512x512/filters:format({THUMBOR_FORMAT[fmt]})"
                f":quality({QUALITY[fmt]})/{id}.jpg")

    def url_list(self, paths: list[str]) -> Path:
        out = self.work / "lists" / f"{next(self._lists):04d}.txt"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(paths) + "\n")
        return out

    def client(self, ports: tuple[int, ...], paths: list[str], concurrency: int,
               duration: float) -> dict:
        """Each path at most once, from ``concurrency`` connections (bench/harness/client.py)."""
        cmd = [sys.executable, "-m", "bench.harness.client", "--port", ",".join(map(str, ports)), "--targets",
               str(self.url_list(paths)), "--concurrency", str(concurrency),
               "--duration", str(duration)]
        return json_run(cmd, duration + 300)

    def bare(self, ids: list[str], fmt: str, concurrency: int, duration: float) -> dict:
        files = [str(self.inputs.root / f"{id}.jpg") for id in ids]
        cmd = [sys.executable, "-m", "bench.harness.bare", "--files", str(self.url_list([json.dumps(files)])),
               "--presets", str(BENCH_PRESETS), "--fmt", fmt, "--concurrency", str(concurrency),
               "--duration", str(duration)]
        return json_run(cmd, duration + 300)

    def apart(self, module: str, *args: str, timeout: float) -> dict:
        """``python -m module args`` once the machine is quiet: the JSON object it printed,
        with the foreign CPU share while it ran. A case's measuring half runs this way, in a
        process of its own."""
        self.quiet()
        with CpuWatch() as cpu:
            out = json_run([sys.executable, "-m", module, *args], timeout)
        out["foreign_cpu"] = cpu.foreign
        return out


def json_run(cmd: list[str], timeout: float) -> dict:
    """Run ``cmd`` from the checkout; the JSON object it printed."""
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                          cwd=MAIN)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout)
