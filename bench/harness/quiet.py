"""CPU accounting, because the bench shares its 2 cores with whoever else is working.

Two numbers come from /proc for every run:

- *foreign share*: the fraction of the machine's CPU used by processes outside
  the harness's own tree while the run lasted. A run above ``NOISY`` is
  repeated once the machine is quiet again, and the share is reported beside
  each number so a disturbed run is visible, not hidden.
- *target CPU*: CPU seconds the contender's own processes spent, so CPU per
  request can be compared even when wall-clock rates were disturbed.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .procs import stat, tree

HZ = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
NOISY = 0.10  # a run with more foreign CPU than this is repeated
T = TypeVar("T")


def _system_busy() -> int:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, _irq, _softirq, steal = fields[:8]
    # Interrupt time is left out: it belongs to no process, and under a hit run
    # it is mostly our own loopback traffic, which would read as foreign load.
    return user + nice + system + steal


def tree_jiffies(*roots: int) -> int:
    """CPU of ``roots`` and their live descendants, plus every child they have reaped."""
    total = 0
    for pid in tree(*roots):
        fields = stat(pid)
        total += sum(int(x) for x in fields[11:15]) if fields else 0  # utime stime cutime cstime
    return total


class CpuWatch:
    """``with CpuWatch(server.pids) as w: run()``; then ``w.foreign`` and ``w.target_s``."""

    def __init__(self, target: tuple[int, ...] | None = None) -> None:
        self.target = target or ()
        self.foreign = 0.0
        self.target_s = 0.0

    def __enter__(self) -> CpuWatch:
        self._t = time.monotonic()
        self._sys = _system_busy()
        self._ours = tree_jiffies(os.getpid())
        self._target = tree_jiffies(*self.target) if self.target else 0
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.monotonic() - self._t
        ours = tree_jiffies(os.getpid()) - self._ours
        foreign = max(0, _system_busy() - self._sys - ours)
        self.foreign = round(foreign / HZ / max(wall, 1e-6) / CORES, 3)
        if self.target:
            self.target_s = (tree_jiffies(*self.target) - self._target) / HZ


def wait_quiet(max_wait: float, window: float = 1.0) -> float:
    """Wait until a ``window`` has less than NOISY foreign CPU; returns the last share seen."""
    if max_wait <= 0:
        return 0.0
    deadline = time.monotonic() + max_wait
    announced = False
    while True:
        with CpuWatch() as w:
            time.sleep(window)
        if w.foreign < NOISY or time.monotonic() > deadline:
            return w.foreign
        if not announced:
            print(f"[quiet] other processes use {w.foreign:.0%} of the CPU; waiting",
                  file=sys.stderr, flush=True)
            announced = True


def least_disturbed(attempts: int, measure: Callable[[int], T], foreign: Callable[[T], float]) -> T:
    """``measure(attempt)``, repeated while other processes took ``NOISY`` or more of the CPU
    during it (``foreign(result)``), up to ``attempts`` runs; the least disturbed result."""
    best = measure(0)
    for attempt in range(1, attempts):
        if foreign(best) < NOISY:
            break
        r = measure(attempt)
        if foreign(r) < foreign(best):
            best = r
    return best
