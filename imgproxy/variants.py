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
identity (:mod:`imgproxy.cache.failures`) and answered without decoding again.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import cast

from .cache.failures import FailedOriginals
from .cache.flight import SingleFlight
from .cache.memory import MemoryTier, NoMemoryTier
from .errors import ImgproxyError
from .metrics import RENDER_SECONDS, RENDERS, STORE_ERRORS
from .presets import Preset
from .render import Limits, MetaJob, Probed, Rendered, RenderJob
from .stores import Blob, Original, OriginalStore, VariantStore
from .urls import VariantRequest
from .workers import Renderer

log = logging.getLogger("imgproxy")

#: Makes what a key holds from the original: its bytes and the store metadata.
Producer = Callable[[Original], Awaitable[tuple[bytes, dict[str, str]]]]

#: What ``get`` answers: the variant key, the variant, and the tier that served it.
Served = tuple[str, Blob, str]


def variant_key(request: VariantRequest, preset: Preset) -> str:
    """Store key; the preset's digest retires renders of an edited preset."""
    return f"{preset.name}/{preset.digest}/{request.id}.{request.fmt}"


#: Bumped when the document's shape changes, so old documents are never served.
META_VERSION = "v1"


def meta_key(id: str, gps: bool) -> str:
    """Where an original's metadata document is stored, beside its variants.

    ``_meta`` is no preset name (those start with ``[a-z0-9]``) and ``.json`` no
    output format, so it cannot meet ``<preset>/<digest>/<id>.<fmt>``; with GPS
    on, the document lives under another key, so turning the setting on or off
    never serves the other kind.
    """
    return f"_meta/{META_VERSION}{'-gps' if gps else ''}/{id}.json"


@dataclass
class VariantService:
    originals: OriginalStore
    store: VariantStore
    memory: MemoryTier | NoMemoryTier
    renderer: Renderer
    limits: Limits
    failed: FailedOriginals = field(default_factory=FailedOriginals)

    def __post_init__(self) -> None:
        self._flight: SingleFlight[Served] = SingleFlight()

    async def get(self, request: VariantRequest, preset: Preset) -> Served:
        key = variant_key(request, preset)

        async def render(original: Original) -> tuple[bytes, dict[str, str]]:
            started = time.perf_counter()
            rendered = cast(Rendered, await self.renderer.run(
                RenderJob(original.source, preset, request.fmt, self.limits)
            ))
            RENDER_SECONDS.labels(request.fmt).observe(time.perf_counter() - started)
            RENDERS.labels(preset.name, request.fmt).inc()
            return rendered.body, {"preset-digest": preset.digest, "source": original.identity}

        return await self._get(key, request.id, render)

    async def describe(self, id: str, gps: bool = False) -> Served:
        """The metadata document of original ``id`` (JSON), made once like a variant."""
        key = meta_key(id, gps)

        async def make(original: Original) -> tuple[bytes, dict[str, str]]:
            probed = cast(Probed, await self.renderer.run(MetaJob(original.source, self.limits, gps)))
            body = json.dumps({"id": id, **probed.info}, separators=(",", ":"), ensure_ascii=True)
            return body.encode(), {"source": original.identity}

        return await self._get(key, id, make)

    async def _get(self, key: str, id: str, make: Producer) -> Served:
        blob = self.memory.get(key)
        if blob is not None:
            return key, blob, "memory"
        blob = await self.store.get(key)
        if blob is not None:
            self.memory.put(key, blob)
            return key, blob, "store"
        return await self._flight.run(key, lambda: self._produce(key, id, make))

    async def _produce(self, key: str, id: str, make: Producer) -> Served:
        # A render place first: a burst of misses is refused (503) before it
        # waits on leases or downloads originals.
        with self.renderer.admit():
            return await self._render(key, id, make)

    async def _render(self, key: str, id: str, make: Producer) -> Served:
        async with self.store.lease(key) as stored:
            if stored is not None:  # another process rendered it while we waited
                self.memory.put(key, stored)
                return key, stored, "store"
            original = await self.originals.fetch(id)
            self.failed.check(original.identity, key)
            try:
                body, metadata = await make(original)
            except ImgproxyError as exc:
                self.failed.remember(original.identity, key, exc)
                raise
            blob = await self._put(key, Blob.of(body, time.time()), metadata)
            return key, blob, "render"

    async def _put(self, key: str, blob: Blob, metadata: dict[str, str]) -> Blob:
        """Store a render; the blob every client gets from now on."""
        try:
            if not await self.store.put(key, blob, metadata):
                # Another holder stored it first (we outlived our lease):
                # serve theirs, so every client sees the same bytes.
                blob = await self.store.get(key) or blob
        except (ImgproxyError, OSError) as exc:
            # The render is good; serve it and let the next miss store it.
            STORE_ERRORS.labels("put").inc()
            log.error("variant store write failed for %s: %s", key, exc)
        self.memory.put(key, blob)
        return blob

