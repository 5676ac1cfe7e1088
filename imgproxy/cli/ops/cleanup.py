"""``imgproxy purge ID …`` and ``imgproxy gc [--apply]``: removing variants.

Both walk the variant store's folders, ``<preset>/<digest>/``, rather than
every variant: purge tries each format of the id in every such folder (old
digests included), and gc lists only the folders no current preset writes to.
Lease and lock folders (``.leases/``, ``.locks/``) are never listed, so
never touched.

A folder is *stale* when its name is a preset name and a 12-hex digest, and
that (preset, digest) is not one of the current presets: the preset was
removed, or edited so its digest changed. Nothing else in the store is
considered, so gc cannot delete what it does not understand.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import anyio

from ...batch.progress import each
from ...config import load_settings
from ...errors import NotFound
from ...formats import FORMATS
from ...presets import NAME, Preset, load_presets
from ...stores import VariantStore
from ...urls import check_id
from ...variants.service import meta_key
from .common import emit, size, variant_store

DIGEST = re.compile(r"^[0-9a-f]{12}$")


def is_variant_folder(name: str, digest: str) -> bool:
    """Whether ``<name>/<digest>/`` is a variant folder (``_meta/``, ``.leases/``… are not)."""
    return bool(NAME.fullmatch(name) and DIGEST.fullmatch(digest))


async def variant_folders(store: VariantStore, names: list[str] | None = None) -> AsyncIterator[tuple[str, str]]:
    """``(preset, digest)`` of every variant folder (of the presets ``names``, if given)."""
    for name in names if names is not None else [n async for n in store.folders("")]:
        if not NAME.fullmatch(name):
            continue
        async for digest in store.folders(f"{name}/"):
            if is_variant_folder(name, digest):
                yield name, digest


async def purge(store: VariantStore, ids: list[str], preset: str | None = None,
                concurrency: int = 16, presets: Mapping[str, Preset] | None = None) -> list[str]:
    """Delete every variant of ``ids``: each format, each digest; the keys deleted.

    ``preset`` must be one of ``presets`` or have a folder in the store (a
    removed preset's variants stay purgeable): a typo deletes nothing and says so.
    """
    folders = [f async for f in variant_folders(store, [preset] if preset else None)]
    if preset and not folders and preset not in (presets or {}):
        raise NotFound(f"unknown preset {preset!r}: not a current preset, and no {preset}/ folder in the "
                       f"variant store")
    keys = [f"{name}/{digest}/{id}.{fmt}" for id in ids for name, digest in folders for fmt in FORMATS]
    if preset is None:  # and the metadata documents (gc never sees them: ``_meta`` is no preset)
        keys += [meta_key(id, gps) for id in ids for gps in (False, True)]
    deleted: list[str] = []

    async def one(key: str) -> None:
        if await store.delete(key):
            deleted.append(key)

    await each(keys, one, concurrency)
    return sorted(deleted)


@dataclass
class Stale:
    preset: str
    digest: str
    why: str  # "preset removed" or "preset changed (now <digest>)"
    variants: list[tuple[str, int]]  # (key, size)

    @property
    def bytes(self) -> int:
        return sum(n for _, n in self.variants)


async def find_stale(store: VariantStore, presets: Mapping[str, Preset]) -> list[Stale]:
    found = []
    async for name, digest in variant_folders(store):
        current = presets.get(name)
        if current is not None and current.digest == digest:
            continue
        why = "preset removed" if current is None else f"preset changed (now {current.digest})"
        variants = [entry async for entry in store.list(f"{name}/{digest}/")]
        if variants:
            found.append(Stale(name, digest, why, variants))
    return found


def run_purge(args: argparse.Namespace) -> int:
    ids = [check_id(id) for id in args.ids]
    settings = load_settings()
    presets = load_presets(settings.presets)

    async def work() -> list[str]:
        async with variant_store(settings) as store:
            return await purge(store, ids, args.preset, presets=presets)

    deleted = anyio.run(work)
    lines = [f"deleted {key}" for key in deleted] + [f"purged {len(deleted)} variants of {len(ids)} ids"]
    emit({"ids": ids, "deleted": deleted}, args.json, lines)
    return 0


def run_gc(args: argparse.Namespace) -> int:
    settings = load_settings()
    presets = load_presets(settings.presets)

    async def work() -> tuple[list[Stale], int]:
        async with variant_store(settings) as store:
            stale = await find_stale(store, presets)
            deleted = 0
            if args.apply:
                async def one(key: str) -> None:
                    nonlocal deleted
                    if await store.delete(key):  # not `deleted += await …`: that reads before awaiting
                        deleted += 1

                await each([key for s in stale for key, _ in s.variants], one, args.concurrency)
            return stale, deleted

    stale, deleted = anyio.run(work)
    count, total = sum(len(s.variants) for s in stale), sum(s.bytes for s in stale)
    lines = [] if args.summary else [f"{n:>10} {key}" for s in stale for key, n in s.variants]
    lines += [f"{s.preset}/{s.digest}/: {len(s.variants)} variants, {size(s.bytes)}: {s.why}" for s in stale]
    lines.append(f"{count} stale variants, {size(total)}"
                 + (f": deleted {deleted}" if args.apply else ": nothing deleted (run with --apply to delete)"))
    emit({"stale": [{"preset": s.preset, "digest": s.digest, "why": s.why, "count": len(s.variants),
                     "bytes": s.bytes} for s in stale],
          "count": count, "bytes": total, "applied": args.apply, "deleted": deleted}, args.json, lines)
    return 0

