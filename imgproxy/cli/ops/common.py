"""What the store commands share: clients, sizes, reports (their loop and progress: :mod:`imgproxy.batch.progress`)."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, TextIO, TypeVar

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
