"""What a batch command has done so far (:class:`Tally`) and how it is shown.

On a terminal, a rich progress bar on stderr: originals done and ETA, then
variants and rate as far as the terminal is wide (80 columns show the
variants for ordinary counts; the count and ETA are never cut). Otherwise a
plain line every few seconds, so logs of a long backfill show it moving
without control characters. The summary at the end is a few lines of text,
or one JSON object with ``--json``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import ImgproxyError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

PLAIN_EVERY = 5.0  # seconds between plain progress lines
BAR_WIDTH = 14  # columns of the bar itself; the text beside it gets the rest
SHOWN_FAILURES = 20  # failed originals named in the text summary


@dataclass
class Tally:
    originals: int  # to do
    variants: int  # to do: originals x presets x formats
    started: float = field(default_factory=time.monotonic)
    originals_done: int = 0
    rendered: int = 0
    skipped: int = 0
    failed: int = 0  # variants
    retries: int = 0  # whole jobs run again after a worker crash, timeout or store outage
    by_category: Counter[str] = field(default_factory=Counter)  # failed variants by error
    failures: list[dict[str, Any]] = field(default_factory=list)  # one entry per failed original

    def done(self, id: str, rendered: int, skipped: int, failed: dict[str, ImgproxyError]) -> None:
        """One original finished; ``failed``: variant key (or id, for the whole original) -> error."""
        self.originals_done += 1
        self.rendered += rendered
        self.skipped += skipped
        self.failed += len(failed)
        for exc in failed.values():
            self.by_category[exc.error] += 1
        if failed:
            first = next(iter(failed.values()))
            self.failures.append({"id": id, "variants": len(failed), "status": first.status,
                                  "error": first.error, "detail": first.detail})

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def summary(self) -> dict[str, Any]:
        took = max(self.seconds, 1e-9)
        return {
            "originals": self.originals_done, "variants": self.rendered + self.skipped + self.failed,
            "rendered": self.rendered, "skipped": self.skipped, "failed": self.failed,
            "failed_originals": len(self.failures), "failed_by_category": dict(self.by_category),
            "retries": self.retries, "seconds": round(took, 2),
            "originals_per_s": round(self.originals_done / took, 2),
            "variants_per_s": round(self.rendered / took, 2),
            "failures": self.failures,
        }

    def seconds_left(self) -> float | None:
        rate = self.originals_done / max(self.seconds, 1e-9)
        return (self.originals - self.originals_done) / rate if rate else None

    def line(self) -> str:
        took = max(self.seconds, 1e-9)
        rate = self.originals_done / took
        left = self.seconds_left()
        eta = f"ETA {left:.0f}s" if left is not None else "ETA ?"
        return (f"{self.originals_done}/{self.originals} originals, {self.rendered} rendered, "
                f"{self.skipped} skipped, {self.failed} failed, {rate:.1f} originals/s, "
                f"{self.rendered / took:.1f} variants/s, {eta}")


def print_summary(tally: Tally, as_json: bool, verb: str = "warmed") -> None:
    s = tally.summary()
    if as_json:
        print(json.dumps(s))
        return
    for failure in s["failures"][:SHOWN_FAILURES]:
        print(f"failed {failure['id']}: {failure['status']} {failure['error']}: {failure['detail']}", file=sys.stderr)
    if len(s["failures"]) > SHOWN_FAILURES:
        print(f"... and {len(s['failures']) - SHOWN_FAILURES} more failed originals (--json lists all)",
              file=sys.stderr)
    categories = ", ".join(f"{k} {v}" for k, v in sorted(s["failed_by_category"].items())) or "none"
    print(f"{verb} {s['originals']} originals in {s['seconds']}s: {s['rendered']} rendered, "
          f"{s['skipped']} skipped (already stored), {s['failed']} failed ({categories}), "
          f"{s['retries']} retries; {s['originals_per_s']} originals/s, {s['variants_per_s']} variants/s")


@asynccontextmanager
async def shown(tally: Tally, what: str = "warm") -> AsyncIterator[None]:
    """Show ``tally`` moving while the body runs: a bar on a terminal, lines otherwise."""
    if sys.stderr.isatty():
        async with _bar(tally, what):
            yield
        return
    task = asyncio.create_task(_plain(tally, what))
    try:
        yield
    finally:
        task.cancel()


async def _plain(tally: Tally, what: str) -> None:
    while True:
        await asyncio.sleep(PLAIN_EVERY)
        print(f"{what}: {tally.line()}", file=sys.stderr, flush=True)


def bar_text(tally: Tally, width: int) -> str:
    """What stands beside the bar, in ``width`` columns: the count and ETA always,
    then as much of the rest as fits, most telling first (the rate last: the ETA
    says what it is for)."""
    left = tally.seconds_left()
    eta = "ETA ?" if left is None else f"ETA {_clock(int(left))}"
    text = f"{tally.originals_done}/{tally.originals} originals {eta}"
    rate = tally.rendered / max(tally.seconds, 1e-9)
    separator = " · "
    for part in (f"{tally.rendered} rendered", f"{tally.failed} failed", f"{tally.skipped} skipped",
                 f"{rate:.1f} variants/s"):
        if len(text) + len(separator) + len(part) > width:
            break
        text += separator + part
        separator = ", "
    return text


def _clock(seconds: int) -> str:
    hours, minutes = seconds // 3600, seconds // 60 % 60
    return f"{hours}:{minutes:02}:{seconds % 60:02}" if hours else f"{minutes}:{seconds % 60:02}"


def progress_bar(what: str, console: Console) -> Progress:
    from rich.progress import BarColumn, Progress, TextColumn

    return Progress(TextColumn(what), BarColumn(bar_width=BAR_WIDTH), TextColumn("{task.fields[text]}"),
                    console=console, transient=False)


def show_tally(bar: Progress, task: TaskID, what: str, tally: Tally) -> None:
    beside = bar.console.width - len(what) - BAR_WIDTH - 2  # two column gaps
    bar.update(task, completed=tally.originals_done, text=bar_text(tally, beside))


@asynccontextmanager
async def _bar(tally: Tally, what: str) -> AsyncIterator[None]:
    from rich.console import Console

    with progress_bar(what, Console(stderr=True)) as bar:
        task = bar.add_task(what, total=tally.originals, text="")

        async def refresh() -> None:
            while True:
                show_tally(bar, task, what, tally)
                await asyncio.sleep(0.2)

        updater = asyncio.create_task(refresh())
        try:
            yield
        finally:
            updater.cancel()
            show_tally(bar, task, what, tally)
