"""Peak RSS of a process tree, sampled from /proc every 50 ms in a thread.

The server forks uvicorn workers (and may fork render workers), so the number
that matters is the sum over the whole tree at each instant, not the peak of
any one process.
"""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from .procs import tree

_PAGE = os.sysconf("SC_PAGE_SIZE")


def tree_rss(root: int) -> tuple[int, int]:
    """(bytes of RSS summed over ``root`` and its descendants, number of processes)."""
    per = tree_rss_by_pid(root)
    return sum(per.values()), len(per)


def rss(pid: int) -> int | None:
    """Bytes of RSS of one process; None once it is gone."""
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return None


def tree_rss_by_pid(root: int) -> dict[int, int]:
    """Bytes of RSS of ``root`` and of every descendant, by pid."""
    return {pid: resident for pid in tree(root) if (resident := rss(pid)) is not None}


#: A process whose command line matches this renders (``imgproxy.workers.child``,
#: or any render pool under ``imgproxy.workers``); every other one in the tree
#: is a server process (the uvicorn supervisor and its workers).
RENDER_PROCESS = re.compile(r"imgproxy\.workers\.")


def role(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "gone"
    return "render" if RENDER_PROCESS.search(cmdline) else "server"


class PeakSampler:
    """``with PeakSampler(pid) as s: ...``; then ``s.peak`` bytes and ``s.max_procs``,
    and per process ``s.per_pid`` (peak bytes) and ``s.roles`` ("render" or "server")."""

    def __init__(self, pid: int, interval: float = 0.05) -> None:
        self.pid = pid
        self.interval = interval
        self.peak = 0
        self.max_procs = 0
        self.per_pid: dict[int, int] = {}  # peak RSS of each process seen
        self.roles: dict[int, str] = {}
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            per = tree_rss_by_pid(self.pid)
            rss, procs = sum(per.values()), len(per)
            self.peak = max(self.peak, rss)
            self.max_procs = max(self.max_procs, procs)
            for pid, resident in per.items():
                self.per_pid[pid] = max(self.per_pid.get(pid, 0), resident)
                if pid not in self.roles:
                    self.roles[pid] = role(pid)
            self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
