"""Getting a variant: memory tier, then the store, then one render.

    memory ──miss──> store ──miss──> single-flight (this process)
                                        └─> lease (all processes/machines)
                                              ├─ stored meanwhile? serve it
                                              └─ fetch original -> failed before? -> render -> put

The render happens under both the in-process single-flight and the store's
lease, so it happens once however many requests, processes or machines ask.
An original's metadata document (:meth:`VariantService.describe`) takes the
same path under its own key, :func:`meta_key`.
A render that failed because of its input is remembered by the original's
identity (:mod:`imgproxy.cache.failures`) and answered without decoding again;
a worker crash only once a fresh worker crashed on it too.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

from .cache.failures import FailedOriginals
from .cache.flight import SingleFlight
from .cache.memory import MemoryTier, NoMemoryTier
from .errors import ImgproxyError, Undecodable
from .metrics import (
    RENDER_QUEUE,
    RENDER_SECONDS,
    RENDERS,
    RENDERS_IN_FLIGHT,
    SOURCE_BYTES,
    STORE_ERRORS,
    STORE_SECONDS,
    VARIANT_BYTES,
)
from .presets import Preset
from .render import Job, Limits, MetaJob, Probed, ProbeJob, Rendered, RenderJob, Result, Source
from .stores import Blob, Original, OriginalStore, VariantStore
from .urls import VariantRequest
from .workers import Renderer

log = logging.getLogger("imgproxy")


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

    async def get(self, request: VariantRequest, preset: Preset) -> Served:
        key, blob, tier, _ = await self.serve(request, preset)
        return key, blob, tier

    async def serve(self, request: VariantRequest, preset: Preset) -> Timed:
        """``get``, plus the render's :class:`Timings` for the request that rendered."""
        key = variant_key(request, preset)
        blob = self.memory.get(key)
        if blob is not None:  # the commonest answer, before anything is built for a render
            return key, blob, "memory", None

        async def render(original: Original, timings: Timings) -> tuple[bytes, dict[str, str]]:
            shaped = preset.at_width(request.width) if request.width else preset
            job = RenderJob(original.source, shaped, request.fmt, self.limits, self.avif_effort, focus=request.focus)
            rendered = cast(Rendered, await self._run(job, timings))
            RENDER_SECONDS.labels(request.fmt).observe(timings.render)
            RENDERS.labels(preset.name, request.fmt).inc()
            VARIANT_BYTES.labels(request.fmt).inc(len(rendered.body))
            return rendered.body, variant_metadata(preset, original)

        return await self._get(key, request.id, render)

    async def describe(self, id: str, gps: bool = False) -> Served:
        """The metadata document of original ``id`` (JSON), made once like a variant."""

        async def make(original: Original, timings: Timings) -> tuple[bytes, dict[str, str]]:
            probed = cast(Probed, await self._run(MetaJob(original.source, self.limits, gps), timings))
            body = json.dumps({"id": id, **probed.info}, separators=(",", ":"), ensure_ascii=True)
            return body.encode(), {"source": original.identity}

        key, blob, tier, _ = await self._get(meta_key(id, gps), id, make)
        return key, blob, tier

    async def _get(self, key: str, id: str, make: Producer) -> Timed:
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
        async with self.store.lease(key) as stored:
            timings.lease, mark = _since(mark)
            self._seconds["lease"].observe(timings.lease)
            if stored is not None:  # another process rendered it while we waited
                self.memory.put(key, stored)
                return key, stored, "store", None
            original = await self.originals.fetch(id)
            timings.fetch, mark = _since(mark)
            self._seconds["fetch"].observe(timings.fetch)
            SOURCE_BYTES.inc(_size(original.source))
            try:
                self.failed.check(original.identity, key)
                body, metadata = await make(original, timings)
            except ImgproxyError as exc:
                log.warning("render of %s failed (category: %s): %s%s", key, exc.error, exc.detail,
                            f" ({exc.internal})" if exc.internal else "")
                self.failed.remember(original.identity, key, exc)
                raise
            finally:
                original.close()  # a fetched original's spool file and budget, before the put
            mark = time.perf_counter()
            blob = Blob.of(body, time.time())
            kept = await self.put(key, blob, metadata)
            if kept is None:  # the render is good: serve it, and let the next miss store it
                self.memory.put(key, blob)
            timings.store, _ = _since(mark)
            return key, kept or blob, "render", timings

    async def has_alpha(self, id: str) -> bool:
        """Whether the original ``id`` has an alpha channel: a header probe in a worker."""
        original = await self.originals.fetch(id)
        try:
            with self.renderer.admit():
                probed = await self.renderer.run(ProbeJob(original.source, self.limits))
        finally:
            original.close()
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
