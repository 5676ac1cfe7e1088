"""How far a batch command is, and how that is shown: the one progress toolkit of warm,
put and the store commands, and their one bounded loop (:func:`each`).

:class:`Progress` shows items done of a total. On a terminal, a rich bar on
stderr with the count and ETA beside it, never cut, then as many of the
command's own figures as the terminal is wide (80 columns show them for
ordinary counts). Otherwise a plain line every few seconds, so logs of a long
backfill show it moving without control characters. :class:`Tally` is what a
warm-up or consumer counts; its summary at the end is a few lines of text, or
one JSON object with ``--json``.
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO, TypeVar

import anyio

from ..errors import ImgproxyError

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress as RichProgress
    from rich.progress import TaskID

T = TypeVar("T")

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

    def figures(self) -> list[str]:
        """What :class:`Progress` shows beside the count, most telling first (the rate last:
        the ETA says what it is for)."""
        rate = self.rendered / max(self.seconds, 1e-9)
        return [f"{self.rendered} rendered", f"{self.failed} failed", f"{self.skipped} skipped",
                f"{rate:.1f} variants/s"]

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


async def each(items: Iterable[T], work: Callable[[T], Awaitable[None]], concurrency: int) -> None:
    """``work(item)`` for every item, at most ``concurrency`` at once; bounds the tasks
    started, not only those running, so a million keys are not a million tasks."""
    slots = anyio.Semaphore(max(1, concurrency))

    async def one(item: T) -> None:
        try:
            await work(item)
        finally:
            slots.release()

    async with anyio.create_task_group() as tg:
        for item in items:
            await slots.acquire()
            tg.start_soon(one, item)


class Progress:
    """``total`` items of ``unit`` under the label ``what``; :meth:`advance` counts one
    done and takes the figures to show beside the count, most telling first."""

    def __init__(self, what: str, total: int, unit: str = "", *, out: TextIO | None = None,
                 plain: bool = True) -> None:
        self.what, self.total, self.unit = what, total, unit
        self.out = out or sys.stderr
        self.plain = plain  # a line every PLAIN_EVERY seconds off a terminal
        self.done = 0
        self.started = self._last = time.monotonic()
        self._bar: RichProgress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Progress:
        if self.out.isatty():
            from rich.console import Console

            self._bar = bar(self.what, Console(file=self.out))
            self._bar.__enter__()
            self._task = self._bar.add_task(self.what, total=self.total, text="")
        return self

    def advance(self, figures: Sequence[str] = (), n: int = 1) -> None:
        self.done += n
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=self.done, text=self.beside(figures, self._bar.console.width))
            return
        now = time.monotonic()
        if self.plain and (now - self._last >= PLAIN_EVERY or self.done == self.total):
            self._last = now
            print(f"{self.what}: {self.beside(figures, 1 << 16)}", file=self.out, flush=True)

    def beside(self, figures: Sequence[str], width: int) -> str:
        """The count and ETA always, then as many ``figures`` as fit in ``width`` columns."""
        rate = self.done / max(time.monotonic() - self.started, 1e-9)
        eta = f"ETA {_clock(int((self.total - self.done) / rate))}" if rate else "ETA ?"
        return fitted(f"{self.done}/{self.total}{' ' + self.unit if self.unit else ''} {eta}", figures,
                      width - len(self.what) - BAR_WIDTH - 2)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)


def fitted(text: str, figures: Sequence[str], width: int) -> str:
    """``text``, then ``figures`` while they fit in ``width`` columns (``text`` itself is never cut)."""
    separator = " · "
    for part in figures:
        if len(text) + len(separator) + len(part) > width:
            break
        text += separator + part
        separator = ", "
    return text


def _clock(seconds: int) -> str:
    hours, minutes = seconds // 3600, seconds // 60 % 60
    return f"{hours}:{minutes:02}:{seconds % 60:02}" if hours else f"{minutes}:{seconds % 60:02}"


def bar(what: str, console: Console) -> RichProgress:
    from rich.progress import BarColumn, TextColumn
    from rich.progress import Progress as RichProgress

    return RichProgress(TextColumn(what), BarColumn(bar_width=BAR_WIDTH), TextColumn("{task.fields[text]}"),
                        console=console, transient=False)


