"""``imgproxy du``: variant-store usage by preset and format, and the capacity plan.

Usage counts every variant the store lists (one listing of the whole store),
grouped by preset and format. Apart from them: variants of stale folders,
exactly those ``imgproxy gc`` lists (:mod:`.cleanup`); the metadata documents
(``_meta/``, current, not stale); and any other key (gc leaves it alone).
Next to it stands the estimate

    originals × presets × formats × mean variant size

with originals counted by listing the originals store (or ``--originals N``
where it cannot be listed, as with HTTP origins), presets the current ones
and formats every output format (or those given), so an operator can check
the capacity plan against what is stored.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field

import anyio

from ...config import Settings, load_settings
from ...errors import Unsupported
from ...formats import FORMATS
from ...presets import Preset, load_presets
from ...stores import OriginalStore, VariantStore
from ...variants.service import META_FOLDER
from ...variants.services import ORIGINAL_STORES, open_store
from .cleanup import is_variant_folder
from .common import clients, emit, size, variant_store


@dataclass
class Usage:
    rows: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (preset, fmt) -> [count, bytes]
    stale_count: int = 0
    stale_bytes: int = 0
    meta_count: int = 0
    meta_bytes: int = 0
    other_count: int = 0
    other_bytes: int = 0

    @property
    def count(self) -> int:
        return sum(c for c, _ in self.rows.values())

    @property
    def bytes(self) -> int:
        return sum(b for _, b in self.rows.values())


async def usage(store: VariantStore, presets: Mapping[str, Preset]) -> Usage:
    current = {(p.name, p.digest) for p in presets.values()}
    found = Usage()
    async for key, n in store.list(""):
        preset, _, rest = key.partition("/")
        digest, _, name = rest.partition("/")
        fmt = name.rpartition(".")[2]
        if (preset, digest) in current and fmt in FORMATS:
            row = found.rows.setdefault((preset, fmt), [0, 0])
            row[0] += 1
            row[1] += n
        elif preset == META_FOLDER:
            found.meta_count += 1
            found.meta_bytes += n
        elif is_variant_folder(preset, digest):  # not current: what gc deletes
            found.stale_count += 1
            found.stale_bytes += n
        else:
            found.other_count += 1
            found.other_bytes += n
    return found


async def count_originals(originals: OriginalStore) -> int | None:
    """How many originals the store lists; None where it cannot list."""
    try:
        return sum([1 async for _ in originals.list_keys("")])
    except Unsupported:
        return None


async def _measure(settings: Settings, presets: Mapping[str, Preset],
                   originals: int | None) -> tuple[Usage, int | None]:
    async with variant_store(settings) as store:
        found = await usage(store, presets)
    if originals is None:
        async with clients(settings) as shared:
            source: OriginalStore = await open_store(ORIGINAL_STORES, settings.originals, settings, shared)
            originals = await count_originals(source)
    return found, originals


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    presets = load_presets(settings.presets)
    formats = args.formats.split(",") if args.formats else list(FORMATS)
    found, originals = anyio.run(_measure, settings, presets, args.originals)
    mean = found.bytes / found.count if found.count else 0.0
    estimate = (originals or 0) * len(presets) * len(formats) * mean

    table = [f"{'preset':16} {'format':6} {'count':>9} {'bytes':>10} {'mean':>9} {'if every original':>18}"]
    for (preset, fmt), (count, n) in sorted(found.rows.items()):
        full = f"{size((originals or 0) * n / count)}" if originals is not None else "?"
        table.append(f"{preset:16} {fmt:6} {count:>9} {size(n):>10} {size(n / count):>9} {full:>18}")
    table.append(f"{'total':23} {found.count:>9} {size(found.bytes):>10} {size(mean):>9}")
    if found.stale_count:
        table.append(f"stale (no current preset makes them; see imgproxy gc): {found.stale_count} variants, "
                     f"{size(found.stale_bytes)}")
    if found.meta_count:
        table.append(f"metadata documents (/meta/): {found.meta_count}, {size(found.meta_bytes)}")
    if found.other_count:
        table.append(f"other keys (not variants; gc leaves them): {found.other_count}, {size(found.other_bytes)}")
    if originals is None:
        table.append("capacity estimate: the originals store cannot be listed; give --originals N")
    else:
        share = f" ({100 * found.bytes / estimate:.1f} % of it stored now)" if estimate else ""
        table.append(f"capacity estimate: {originals} originals × {len(presets)} presets × {len(formats)} formats"
                     f" × {size(mean)} mean = {size(estimate)}{share}")
    emit({
        "rows": [{"preset": p, "format": f, "count": c, "bytes": n, "mean": round(n / c)}
                 for (p, f), (c, n) in sorted(found.rows.items())],
        "count": found.count, "bytes": found.bytes, "mean": round(mean),
        "stale_count": found.stale_count, "stale_bytes": found.stale_bytes,
        "meta_count": found.meta_count, "meta_bytes": found.meta_bytes,
        "other_count": found.other_count, "other_bytes": found.other_bytes,
        "originals": originals, "presets": len(presets), "formats": len(formats),
        "estimate_bytes": round(estimate) if originals is not None else None,
    }, args.json, table)
    return 0

