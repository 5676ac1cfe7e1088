"""Peak RSS of a process tree, sampled from /proc every 50 ms in a thread.

The server forks uvicorn workers (and may fork render workers), so the number
that matters is the sum over the whole tree at each instant, not the peak of
any one process.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> tuple[int, int]:
    """(bytes of RSS summed over ``root`` and its descendants, number of processes)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces or ')': fields start after the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    total, count, todo = 0, 0, [root]
    while todo:
        pid = todo.pop()
        try:
            resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        total += resident * _PAGE
        count += 1
        todo.extend(children.get(pid, ()))
    return total, count


class PeakSampler:
    """``with PeakSampler(pid) as s: ...``; then ``s.peak`` bytes and ``s.max_procs``."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.max_procs = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            rss, procs = tree_rss(self.pid)
            self.peak = max(self.peak, rss)
            self.max_procs = max(self.max_procs, procs)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
