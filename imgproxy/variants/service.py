"""Getting a variant: memory tier, then the store, then one render.

    memory ──miss──> store ──miss──> single-flight (this process)
                                        └─> lease (all processes/machines)
                                              ├─ stored meanwhile? serve it
                                              └─ fetch original -> failed before? -> render -> put

The render happens under both the in-process single-flight and the store's
lease, so it happens once however many requests, processes or machines ask.
An original's metadata document (:meth:`VariantService.describe`) takes the
same path under its own key, :func:`meta_key`, and so do fan-outs
(:meth:`VariantService.fan_out`: warm-ups, queue jobs, an upload's eager
renders), which make every missing variant of one original from one decode:

    targets ──exists (memory, store)──> skipped, nothing decoded
       └─ missing ──lease each, in key order──> stored meanwhile? skipped
                          └─ held ──the original (fetched, or an upload's own bytes)──> failed before? failed
                                       └─ one FanoutJob ──> put each (never overwrite)
                                             └─ timed out ──> each variant alone, cheapest first

One method family owns every step of every render: :meth:`_leases`,
:meth:`_original` (fetch), :meth:`_unfailed` and :meth:`_remembering`
(failure memory), :meth:`_run` (crash confirmation) and :meth:`put` (store
and memory tier).

A render that failed because of its input is remembered by the original's
identity (:mod:`imgproxy.cache.failures`) and answered without decoding again;
a worker crash only once a fresh worker crashed on it too.

A fan-out job's deadline is ``render_timeout`` per variant
(:meth:`RendererBase.deadline`). A fan-out that still runs past it proves
nothing against the original: eight variants of a camera photo on a busy
machine may. So it is not remembered; each variant is rendered alone in a
worker instead, as a live miss would be, and only a timeout of such a lone
render counts against the original; the cheapest goes first, and when even it
runs out of time the rest are not tried this time.

Leases are taken in sorted key order: a live request holds one lease at a
time and every fan-out climbs the same ladder, so no two holders wait on each
other in a circle.

:meth:`VariantService.fan_out` raises :class:`ImgproxyError` when the whole
job fails (the original is missing or undecodable, the worker crashed or timed
out, the store is down) and nothing was stored; per-variant failures (over the
output pixel limit, a store write that failed) are in :attr:`FanOut.failed`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from typing import TypeVar, cast

from ..cache.failures import FailedOriginals
from ..cache.flight import SingleFlight
from ..cache.memory import MemoryTier, NoMemoryTier
from ..errors import GatewayTimeout, ImgproxyError, RenderTimeout, Unavailable, Undecodable
from ..metrics import (
    RENDER_QUEUE,
    RENDER_SECONDS,
    RENDERS,
    RENDERS_IN_FLIGHT,
    SOURCE_BYTES,
    STORE_ERRORS,
    STORE_SECONDS,
    VARIANT_BYTES,
)
from ..presets import Preset
from ..render import Fanned, FanoutJob, Job, Limits, MetaJob, Probed, ProbeJob, Rendered, RenderJob, Result, Source
from ..stores import Blob, Original, OriginalStore, VariantStore
from ..urls import VariantRequest, check_id
from ..workers import Renderer
from .fanout import FanOut, Target, cost

log = logging.getLogger("imgproxy")
T = TypeVar("T")


@dataclass(slots=True)
class Timings:
    """Where one render's time went, in seconds (the ``Server-Timing`` of a miss)."""

    lease: float = 0.0  # waiting for the render lease (another process rendering)
    fetch: float = 0.0  # fetching the original
    queue: float = 0.0  # waiting for a free worker
    render: float = 0.0
    store: float = 0.0  # writing the variant


#: What ``get`` answers: the variant key, the variant, and the tier that served
#: it (``memory``, ``store``, ``render``, or ``joined``: another request's render).
Served = tuple[str, Blob, str]
#: What ``serve`` answers: ``Served`` and, only for the request that rendered,
#: where the render's time went.
Timed = tuple[str, Blob, str, Timings | None]
#: Makes what a key holds from the original: its bytes and the store metadata
#: (and notes the render's times).
Producer = Callable[[Original, Timings], Awaitable[tuple[bytes, dict[str, str]]]]

#: Bumped when the metadata document's shape changes, so old documents are never served.
META_VERSION = "v1"
META_FOLDER = "_meta"


def variant_key(request: VariantRequest, preset: Preset) -> str:
    """Store key; the preset's digest retires renders of an edited preset, and
    a ladder width or focal point follows it: ``card/<digest>@w640/shop/42.webp``."""
    return f"{preset.name}/{preset.digest}{request.modifiers}/{request.id}.{request.fmt}"


def variant_metadata(preset: Preset, original: Original) -> dict[str, str]:
    """What a stored variant records of how it was made."""
    return {"preset-digest": preset.digest, "source": original.identity}


def keys_of(id: str, targets: Sequence[Target]) -> list[str]:
    """The variant key of each target of original ``id``."""
    return [variant_key(VariantRequest(preset.name, id, fmt), preset) for preset, fmt in targets]


def meta_key(id: str, gps: bool) -> str:
    """Where an original's metadata document is stored, beside its variants.

    ``_meta`` is no preset name (those start with ``[a-z0-9]``) and ``.json`` no
    output format, so it cannot meet ``<preset>/<digest>/<id>.<fmt>``; with GPS
    on, the document lives under another key, so turning the setting on or off
    never serves the other kind.
    """
    return f"{META_FOLDER}/{META_VERSION}{'-gps' if gps else ''}/{id}.json"


def store_kind(store: object) -> str:
    """``local``, ``s3`` or ``http``: a bounded metric label for a store."""
    return type(store).__module__.rpartition(".")[2]


@dataclass
class VariantService:
    originals: OriginalStore
    store: VariantStore
    memory: MemoryTier | NoMemoryTier
    renderer: Renderer
    limits: Limits
    failed: FailedOriginals = field(default_factory=FailedOriginals)
    avif_effort: int | None = None  # IMGPROXY_AVIF_EFFORT; not in the key (docs/RENDERING.md, "Encoders")
    avif_eager_effort: int | None = None  # IMGPROXY_AVIF_EAGER_EFFORT: fan-out jobs nobody waits for

    def __post_init__(self) -> None:
        self._flight: SingleFlight[Timed] = SingleFlight()
        kind = store_kind(self.store)
        self._seconds = {op: STORE_SECONDS.labels(kind, op) for op in ("get", "put", "lease")}
        self._seconds["fetch"] = STORE_SECONDS.labels(store_kind(self.originals), "fetch")

    async def serve(self, request: VariantRequest, preset: Preset) -> Timed:
        """The variant: its key, its blob, the tier that answered (memory, store, render),
        and the render's :class:`Timings` for the request that rendered."""

        async def render(original: Original, timings: Timings) -> tuple[bytes, dict[str, str]]:
            shaped = preset.at_width(request.width) if request.width else preset
            job = RenderJob(original.source, shaped, request.fmt, self.limits, self.avif_effort, focus=request.focus)
            rendered = cast(Rendered, await self._run(job, timings))
            RENDER_SECONDS.labels(request.fmt).observe(timings.render)
            RENDERS.labels(preset.name, request.fmt).inc()
            VARIANT_BYTES.labels(request.fmt).inc(len(rendered.body))
            return rendered.body, variant_metadata(preset, original)

        return await self._get(variant_key(request, preset), request.id, render)

    async def describe(self, id: str, gps: bool = False) -> Served:
        """The metadata document of original ``id`` (JSON), made once like a variant."""

        async def make(original: Original, timings: Timings) -> tuple[bytes, dict[str, str]]:
            probed = cast(Probed, await self._run(MetaJob(original.source, self.limits, gps), timings))
            body = json.dumps({"id": id, **probed.info}, separators=(",", ":"), ensure_ascii=True)
            return body.encode(), {"source": original.identity}

        key, blob, tier, _ = await self._get(meta_key(id, gps), id, make)
        return key, blob, tier

    async def _get(self, key: str, id: str, make: Producer) -> Timed:
        """The memory tier (the one check), the store, then one render."""
        blob = self.memory.get(key)
        if blob is not None:
            return key, blob, "memory", None
        started = time.perf_counter()
        blob = await self.store.get(key)
        self._seconds["get"].observe(time.perf_counter() - started)
        if blob is not None:
            self.memory.put(key, blob)
            return key, blob, "store", None
        joined = key in self._flight
        served = await self._flight.run(key, lambda: self._produce(key, id, make))
        if joined and served[2] == "render":
            return key, served[1], "joined", None
        return served

    async def _produce(self, key: str, id: str, make: Producer) -> Timed:
        # A render place first: a burst of misses is refused (503) before it
        # waits on leases or downloads originals.
        with self.renderer.admit():
            return await self._render(key, id, make)

    async def _render(self, key: str, id: str, make: Producer) -> Timed:
        timings = Timings()
        mark = time.perf_counter()
        async with self._leases([key]) as stored:
            timings.lease, mark = _since(mark)
            if stored:  # another process rendered it while we waited
                self.memory.put(key, stored[key])
                return key, stored[key], "store", None
            async with self._original(id) as original:
                timings.fetch, mark = _since(mark)
                self._unfailed(original, [key])
                body, metadata = await self._remembering(original, [key], make(original, timings))
            mark = time.perf_counter()  # the original's spool file and budget are given back before the put
            blob = Blob.of(body, time.time())
            kept = await self.put(key, blob, metadata)
            if kept is None:  # the render is good: serve it, and let the next miss store it
                self.memory.put(key, blob)
            timings.store, _ = _since(mark)
            return key, kept or blob, "render", timings

    async def fan_out(self, id: str, targets: Sequence[Target], original: Original | None = None) -> FanOut:
        """Make every variant of ``id`` in ``targets`` that is not stored yet, from one decode.

        ``original`` is the original's bytes where the caller holds them (an
        upload just stored): then nothing is fetched, and the caller closes it."""
        check_id(id)
        out = FanOut(id)
        by_key = dict(zip(keys_of(id, targets), targets))
        missing = await self._missing(list(by_key))
        out.skipped += [key for key in by_key if key not in missing]
        if not missing:
            return out  # existence checks only
        with self.renderer.admit():  # a render place before leases and downloads, as live misses take
            async with self._leases(missing) as stored:
                out.skipped += list(stored)  # rendered elsewhere while we waited
                held = {key: by_key[key] for key in sorted(missing) if key not in stored}
                if held:
                    async with self._original(id, original) as found:
                        await self._fan(found, held, out)
        return out

    async def _missing(self, keys: list[str]) -> list[str]:
        candidates = [key for key in keys if self.memory.get(key) is None]
        found = await asyncio.gather(*(self.store.exists(key) for key in candidates))
        return [key for key, there in zip(candidates, found) if not there]

    async def _fan(self, original: Original, held: dict[str, Target], out: FanOut) -> None:
        """Render what we hold leases for in one job (once more alone, on a fan-out
        timeout), and put each result."""
        todo, failed = self._unfailed(original, list(held))
        out.failed.update(failed)
        targets = {key: held[key] for key in todo}
        fanned = await self._remembering(original, todo, self._fanned(original, targets))
        for (key, (preset, fmt)), result in zip(targets.items(), fanned.results):
            if isinstance(result, ImgproxyError):
                self.failed.remember(original.identity, key, result)
                out.failed[key] = result
                continue
            RENDERS.labels(preset.name, fmt).inc()
            blob = Blob.of(result.body, time.time())
            if await self.put(key, blob, variant_metadata(preset, original)) is not None:
                out.rendered.append(key)
            else:
                out.failed[key] = Unavailable("the variant store refused the write")

    async def _fanned(self, original: Original, targets: dict[str, Target]) -> Fanned:
        job = FanoutJob(original.source, tuple(targets.values()), self.limits, avif_effort=self.avif_eager_effort)
        try:
            return cast(Fanned, await self._run(job, Timings()))
        except RenderTimeout:
            if len(targets) == 1:  # a lone render already: the original's cost
                raise
            return await self._one_by_one(original, targets)

    async def _one_by_one(self, original: Original, targets: dict[str, Target]) -> Fanned:
        """Each target in its own job under ``render_timeout``, cheapest first; a lone
        timeout is the original's (one strike, remembered by the caller) and ends the round."""
        results: dict[str, Rendered | ImgproxyError] = {}
        for key in sorted(targets, key=lambda k: cost(targets[k])):
            preset, fmt = targets[key]
            try:
                job = RenderJob(original.source, preset, fmt, self.limits, self.avif_eager_effort)
                results[key] = cast(Rendered, await self._run(job, Timings()))
            except RenderTimeout as exc:
                results[key] = exc
                untried = GatewayTimeout("not tried: a cheaper variant of this original ran past render_timeout "
                                         "alone", limit="render_timeout")
                results.update({rest: untried for rest in targets if rest not in results})
                break
            except ImgproxyError as exc:
                results[key] = exc
        return Fanned(tuple(results[key] for key in targets))

    @asynccontextmanager
    async def _leases(self, keys: Sequence[str]) -> AsyncIterator[dict[str, Blob]]:
        """The render lease of every key, taken in key order; yields what was stored meanwhile."""
        started = time.perf_counter()
        async with AsyncExitStack() as leases:
            stored: dict[str, Blob] = {}
            for key in sorted(keys):
                blob = await leases.enter_async_context(self.store.lease(key))
                if blob is not None:
                    stored[key] = blob
            self._seconds["lease"].observe(time.perf_counter() - started)
            yield stored

    @asynccontextmanager
    async def _original(self, id: str, given: Original | None = None) -> AsyncIterator[Original]:
        """``given``, or the original ``id`` fetched (and closed: its spool file and budget)."""
        if given is not None:
            yield given
            return
        started = time.perf_counter()
        original = await self.originals.fetch(id)
        self._seconds["fetch"].observe(time.perf_counter() - started)
        SOURCE_BYTES.inc(_size(original.source))
        try:
            yield original
        finally:
            original.close()

    def _unfailed(self, original: Original, keys: list[str]) -> tuple[list[str], dict[str, ImgproxyError]]:
        """The keys not remembered as failed for this original, and the failures of the
        others; when every key failed before, the original fails again, as a whole."""
        todo: list[str] = []
        failed: dict[str, ImgproxyError] = {}
        for key in keys:
            try:
                self.failed.check(original.identity, key)
                todo.append(key)
            except ImgproxyError as exc:
                failed[key] = exc
        if not todo:
            raise next(iter(failed.values()))
        return todo, failed

    async def _remembering(self, original: Original, keys: list[str], run: Awaitable[T]) -> T:
        """``run``; a failure is remembered against the original for every key (and raised)."""
        try:
            return await run
        except ImgproxyError as exc:
            log.warning("render of %s failed (category: %s): %s%s", ", ".join(keys), exc.error, exc.detail,
                        f" ({exc.internal})" if exc.internal else "")
            for key in keys:
                self.failed.remember(original.identity, key, exc)
            raise

    async def has_alpha(self, id: str) -> bool:
        """Whether the original ``id`` has an alpha channel: a header probe in a worker."""
        async with self._original(id) as original:
            with self.renderer.admit():
                probed = await self._run(ProbeJob(original.source, self.limits), Timings())
        return isinstance(probed, Probed) and bool(probed.info.get("alpha"))

    async def _run(self, job: Job, timings: Timings) -> Result:
        """A job, timed; a worker crash is confirmed in a fresh worker before it counts."""
        try:
            return await self._run_once(job, timings)
        except Undecodable as exc:
            if "signal" not in exc.extra:
                raise
            # A worker died of a crash signal: a decoder bug on this input, or a
            # signal from outside (another process, an operator)? Only a second
            # crash in a fresh worker is remembered as the input's.
            log.warning("render worker crashed (%s); confirming with a fresh worker", exc.extra["signal"])
            return await self._run_once(job, timings)

    async def _run_once(self, job: Job, timings: Timings) -> Result:
        """A job, timed: waiting for a worker (queue), then running."""
        queued = time.perf_counter()
        began: list[float] = []

        def started() -> None:
            began.append(time.perf_counter())
            RENDER_QUEUE.dec()
            RENDERS_IN_FLIGHT.inc()

        RENDER_QUEUE.inc()
        try:
            return await self.renderer.run(job, started)
        finally:
            if began:
                RENDERS_IN_FLIGHT.dec()
                timings.queue = began[0] - queued
                timings.render = time.perf_counter() - began[0]
            else:
                RENDER_QUEUE.dec()

    async def put(self, key: str, blob: Blob, metadata: dict[str, str]) -> Blob | None:
        """Store ``blob`` under ``key`` (never overwriting) and keep it in memory.

        Returns the blob every client gets from now on: ours, or another
        holder's that was stored first (we outlived our lease), so every client
        sees the same bytes. None when the store failed (logged and counted)."""
        started = time.perf_counter()
        try:
            if not await self.store.put(key, blob, metadata):
                blob = await self.store.get(key) or blob
        except (ImgproxyError, OSError) as exc:
            STORE_ERRORS.labels("put").inc()
            log.error("variant store write failed for %s: %s", key, exc)
            return None
        finally:
            self._seconds["put"].observe(time.perf_counter() - started)
        self.memory.put(key, blob)
        return blob


def _since(mark: float) -> tuple[float, float]:
    """Seconds since ``mark``, and now (the next mark)."""
    now = time.perf_counter()
    return now - mark, now


def _size(source: Source) -> int:
    if source.data is not None:
        return len(source.data)
    try:
        return os.stat(source.path).st_size if source.path else 0
    except OSError:
        return 0
