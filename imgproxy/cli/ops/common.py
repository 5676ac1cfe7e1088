"""What the store commands share: clients, a bounded loop, sizes, reports, progress."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, TextIO, TypeVar

import anyio

from ...config import Settings
from ...stores import VariantStore
from ...stores.clients import Clients

T = TypeVar("T")


@asynccontextmanager
async def clients(settings: Settings) -> AsyncIterator[Clients]:
    shared = Clients(settings)
    try:
        yield shared
    finally:
        await shared.aclose()


@asynccontextmanager
async def variant_store(settings: Settings) -> AsyncIterator[VariantStore]:
    """The configured variant store (``IMGPROXY_VARIANTS``)."""
    from ...variants.services import VARIANT_STORES, open_store

    async with clients(settings) as shared:
        store: VariantStore = await open_store(VARIANT_STORES, settings.variants, settings, shared)
        try:
            yield store
        finally:
            await store.aclose()


async def each(items: Iterable[T], work: Callable[[T], Awaitable[None]], concurrency: int) -> None:
    """``work(item)`` for every item, at most ``concurrency`` at once."""
    slots = anyio.Semaphore(max(1, concurrency))

    async def one(item: T) -> None:
        try:
            await work(item)
        finally:
            slots.release()

    async with anyio.create_task_group() as tg:
        for item in items:
            await slots.acquire()  # bounds the tasks started, not just those running
            tg.start_soon(one, item)


def size(n: float) -> str:
    """Bytes for people: ``1.5 MB`` (powers of 1000, like S3 consoles and ``du --si``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def emit(summary: dict[str, Any], as_json: bool, lines: Iterable[str], out: TextIO = sys.stdout) -> None:
    """The summary as JSON, or as the given lines."""
    if as_json:
        print(json.dumps(summary, indent=2, sort_keys=True), file=out)
    else:
        for line in lines:
            print(line, file=out)


class Progress:
    """A rich progress bar on a terminal; otherwise a plain line every ``every`` seconds.

    ``advance(status)`` counts one item done; ``status`` is the running tally.
    """

    def __init__(self, label: str, total: int, *, out: TextIO = sys.stderr, every: float = 5.0) -> None:
        self.label, self.total, self.out, self.every = label, total, out, every
        self.done = 0
        self._last = time.monotonic()
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Progress:
        if self.out.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
            from rich.progress import Progress as Bar

            self._bar = Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                            console=Console(file=self.out), transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, status="")
        return self

    def advance(self, status: str) -> None:
        self.done += 1
        if self._bar is not None:
            self._bar.update(self._task, advance=1, status=status)
            return
        now = time.monotonic()
        if now - self._last >= self.every or self.done == self.total:
            self._last = now
            print(f"{self.label}: {self.done}/{self.total} {status}", file=self.out, flush=True)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, exc, tb)

