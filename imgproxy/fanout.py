"""Decode once, fan out: every missing variant of one original from one decode, each exactly once.

    targets ──exists (memory, store)──> skipped, nothing decoded
       └─ missing ──lease each, in key order──> stored meanwhile? skipped
                          └─ held ──fetch original once──> failed before? failed
                                       └─ one FanoutJob ──> put each (never overwrite)
                                             └─ timed out ──> each variant alone, cheapest first

The job's deadline is ``render_timeout`` per variant (:meth:`RendererBase.deadline`).
A fan-out that still runs past it proves nothing against the original: eight
variants of a camera photo on a busy machine may. So it is not remembered;
each variant is rendered alone in a worker instead, as a live miss would be,
and only a timeout of such a lone render counts against the original
(:mod:`imgproxy.cache.failures`); the cheapest goes first, and when even it
runs out of time the rest are not tried this time.

The leases are the ones live requests take (:meth:`VariantStore.lease`), so a
fan-out racing live traffic, another fan-out or another machine never renders
a variant twice. They are taken in sorted key order: a live request holds one
lease at a time and every fan-out climbs the same ladder, so no two holders
wait on each other in a circle.

:func:`fan_out` raises :class:`ImgproxyError` when the whole job fails (the
original is missing or undecodable, the worker crashed or timed out, the
store is down) and nothing was stored; per-variant failures (over the output
pixel limit, a store write that failed) are in :attr:`FanOut.failed`. Either
way, a 5xx is worth retrying and a 4xx is not (:func:`transient`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import cast

from .errors import BadRequest, GatewayTimeout, ImgproxyError, NotFound, RenderTimeout, Unavailable
from .formats import FORMATS
from .metrics import RENDERS
from .presets import Preset
from .render import Fanned, FanoutJob, Rendered, RenderJob
from .stores import Blob, Original
from .urls import VariantRequest, check_id
from .variants import VariantService, variant_key, variant_metadata

#: One variant to make: a preset and an output format.
Target = tuple[Preset, str]


@dataclass
class FanOut:
    """What one job did, by variant key."""

    id: str
    rendered: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, ImgproxyError] = field(default_factory=dict)

    @property
    def transient(self) -> bool:
        return any(transient(exc) for exc in self.failed.values())


def transient(exc: ImgproxyError) -> bool:
    """Worth running again: the store, origin or worker failed, not the original."""
    return exc.status >= 500


def keys_of(id: str, targets: Sequence[Target]) -> list[str]:
    return [variant_key(VariantRequest(preset.name, id, fmt), preset) for preset, fmt in targets]


async def fan_out(variants: VariantService, id: str, targets: Sequence[Target]) -> FanOut:
    """Make every variant of ``id`` in ``targets`` that is not stored yet, from one decode."""
    check_id(id)
    out = FanOut(id)
    by_key = dict(zip(keys_of(id, targets), targets))
    missing = await _missing(variants, by_key)
    out.skipped += [key for key in by_key if key not in missing]
    if not missing:
        return out  # existence checks only
    with variants.renderer.admit():  # a render place before leases and downloads, as live misses do
        async with AsyncExitStack() as leases:
            held: list[str] = []
            for key in sorted(missing):
                stored = await leases.enter_async_context(variants.store.lease(key))
                if stored is not None:  # rendered elsewhere while we waited
                    out.skipped.append(key)
                else:
                    held.append(key)
            if held:
                await _render(variants, id, {key: by_key[key] for key in held}, out)
    return out


async def _missing(variants: VariantService, by_key: dict[str, Target]) -> list[str]:
    candidates = [key for key in by_key if variants.memory.get(key) is None]
    found = await asyncio.gather(*(variants.store.exists(key) for key in candidates))
    return [key for key, there in zip(candidates, found) if not there]


async def _render(variants: VariantService, id: str, held: dict[str, Target], out: FanOut) -> None:
    """Fetch once, render what we hold leases for in one job, put each result."""
    original = await variants.originals.fetch(id)
    try:
        await _render_fetched(variants, original, held, out)
    finally:
        original.close()  # a fetched original's spool file and budget


async def _render_fetched(variants: VariantService, original: Original, held: dict[str, Target],
                          out: FanOut) -> None:
    todo: dict[str, Target] = {}
    for key, target in held.items():
        try:
            variants.failed.check(original.identity, key)  # failed before: do not decode again
            todo[key] = target
        except ImgproxyError as exc:
            out.failed[key] = exc
    if not todo:  # every variant we hold failed before: the original fails again, as a whole
        raise next(iter(out.failed.values()))
    job = FanoutJob(original.source, tuple(todo.values()), variants.limits,
                    avif_effort=variants.avif_eager_effort)
    try:
        fanned = cast(Fanned, await variants.renderer.run(job))
    except RenderTimeout as exc:
        if len(todo) == 1:  # a lone render already: the original's cost
            variants.failed.remember(original.identity, next(iter(todo)), exc)
            raise
        fanned = await _one_by_one(variants, original, todo)
    except ImgproxyError as exc:
        for key in todo:
            variants.failed.remember(original.identity, key, exc)
        raise
    for (key, (preset, fmt)), result in zip(todo.items(), fanned.results):
        if isinstance(result, ImgproxyError):
            variants.failed.remember(original.identity, key, result)
            out.failed[key] = result
            continue
        RENDERS.labels(preset.name, fmt).inc()
        blob = Blob.of(result.body, time.time())
        if await variants.put(key, blob, variant_metadata(preset, original)) is not None:
            out.rendered.append(key)
        else:
            out.failed[key] = Unavailable("the variant store refused the write")


async def _one_by_one(variants: VariantService, original: Original, todo: dict[str, Target]) -> Fanned:
    """Each target in its own job under ``render_timeout``, cheapest first; a lone
    timeout is the original's (one strike, remembered by the caller) and ends the round."""
    results: dict[str, Rendered | ImgproxyError] = {}
    for key in sorted(todo, key=lambda k: _cost(todo[k])):
        preset, fmt = todo[key]
        try:
            job = RenderJob(original.source, preset, fmt, variants.limits, variants.avif_eager_effort)
            results[key] = cast(Rendered, await variants.renderer.run(job))
        except RenderTimeout as exc:
            results[key] = exc
            untried = GatewayTimeout("not tried: a cheaper variant of this original ran past render_timeout alone",
                                     limit="render_timeout")
            results.update({rest: untried for rest in todo if rest not in results})
            break
        except ImgproxyError as exc:
            results[key] = exc
    return Fanned(tuple(results[key] for key in todo))


def _cost(target: Target) -> tuple[bool, int]:
    """A rough order of render cost: AVIF last, then by output box."""
    preset, fmt = target
    return fmt == "avif", preset.width * preset.height


def targets_of(presets: Mapping[str, Preset], names: Sequence[str], formats: Sequence[str]) -> list[Target]:
    """Every (preset, format) pair; an unknown preset or format is the job's fault (4xx)."""
    unknown = [name for name in names if name not in presets]
    if unknown:
        raise NotFound(f"unknown preset(s) {', '.join(unknown)}; known: {', '.join(presets)}")
    bad = [fmt for fmt in formats if fmt not in FORMATS]
    if bad:
        raise BadRequest(f"unknown format(s) {', '.join(bad)}; known: {', '.join(FORMATS)}")
    return [(presets[name], fmt) for name in dict.fromkeys(names) for fmt in dict.fromkeys(formats)]
