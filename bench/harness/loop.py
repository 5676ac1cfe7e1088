"""The bare contenders' measuring loop (bench/harness/bare.py and bare_direct.py): threads
render items one at a time until none is left or the deadline has passed."""

from __future__ import annotations

import resource
import sys
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def cpu_seconds() -> float:
    """CPU of this process so far, all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def render_loop(threads: int, deadline: float, next_item: Callable[[], T | None],
                render_one: Callable[[T], bytes]) -> tuple[list[float], int, float]:
    """``threads`` threads each take ``next_item()`` (called under a lock; None: no more) and time
    ``render_one(item)``, starting none after ``deadline`` (``time.monotonic()``).

    Returns the seconds of each render that gave bytes, the count of those that failed or gave
    none, and the CPU seconds this process spent in the loop.
    """
    lock = threading.Lock()
    latencies: list[float] = []
    errors = 0

    def worker() -> None:
        nonlocal errors
        while time.monotonic() < deadline:
            with lock:
                item = next_item()
            if item is None:
                return
            t0 = time.perf_counter()
            try:
                ok = len(render_one(item)) > 0
            except Exception as exc:
                print(f"bench: {item}: {exc}", file=sys.stderr)
                ok = False
            t1 = time.perf_counter()
            with lock:
                if ok:
                    latencies.append(t1 - t0)
                else:
                    errors += 1

    cpu0 = cpu_seconds()
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return latencies, errors, cpu_seconds() - cpu0
