"""``imgproxy purge ID … [--cdn]`` and ``imgproxy gc [--apply]``: removing variants.

Both walk the variant store's folders, ``<preset>/<digest>/``, rather than
every variant: purge tries each format of the id in every such folder (old
digests included), and gc lists only the folders no current preset writes to.
Lease and lock folders (``.leases/``, ``.locks/``) are never listed, so
never touched.

A folder is *stale* when its name is a preset name and a 12-hex digest, and
that (preset, digest) is not one of the current presets: the preset was
removed, or edited so its digest changed. Nothing else in the store is
considered, so gc cannot delete what it does not understand.

``purge --cdn`` then purges each CDN of ``IMGPROXY_CDN_PURGE`` by the ids'
surrogate keys (:mod:`imgproxy.cdn`): every URL of the original, whatever
``--preset`` narrowed in the store. The store part is done first and stays
done when a CDN fails; that failure is printed and the exit code is 1.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import anyio
import httpx

from ...batch.progress import each
from ...cdn import CdnError, purgers, surrogate_key
from ...config import ConfigError, Settings, load_settings
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


#: Seconds one CDN purge request may take.
CDN_TIMEOUT = 10.0


async def purge_cdns(settings: Settings, ids: list[str]) -> list[dict[str, str]]:
    """Purge every CDN of ``IMGPROXY_CDN_PURGE`` by the surrogate keys of ``ids``; one result each."""
    keys = sorted({surrogate_key(id) for id in ids})
    results = []
    async with httpx.AsyncClient(timeout=CDN_TIMEOUT) as client:
        for cdn in purgers(settings.cdn_purge):
            try:
                await cdn.purge(client, keys)
                results.append({"cdn": cdn.name, "error": ""})
            except CdnError as exc:
                results.append({"cdn": cdn.name, "error": str(exc)})
    return results


def run_purge(args: argparse.Namespace) -> int:
    ids = [check_id(id) for id in args.ids]
    settings = load_settings()
    presets = load_presets(settings.presets)
    if args.cdn and not settings.cdn_purge:
        raise ConfigError("IMGPROXY_CDN_PURGE: purge --cdn needs at least one CDN (varnish:http://edge:6081)")
    if args.cdn and not settings.surrogate_key_header:
        raise ConfigError("IMGPROXY_SURROGATE_KEY_HEADER: empty, so responses carry no surrogate key that "
                          "purge --cdn could purge by")

    async def work() -> tuple[list[str], list[dict[str, str]]]:
        async with variant_store(settings) as store:
            deleted = await purge(store, ids, args.preset, presets=presets)
        return deleted, (await purge_cdns(settings, ids) if args.cdn else [])

    deleted, cdns = anyio.run(work)
    lines = [f"deleted {key}" for key in deleted] + [f"purged {len(deleted)} variants of {len(ids)} ids"]
    lines += [f"purged {r['cdn']} by {len(ids)} surrogate keys" for r in cdns if not r["error"]]
    summary: dict[str, object] = {"ids": ids, "deleted": deleted}
    if args.cdn:
        summary["cdn"] = cdns
    emit(summary, args.json, lines)
    failed = [r for r in cdns if r["error"]]
    for r in failed:
        print(f"imgproxy: CDN purge failed (the store's variants are deleted): {r['error']}", file=sys.stderr)
    return 1 if failed else 0


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

