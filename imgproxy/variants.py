"""Getting a variant: memory tier, then the store, then one render.

    memory ──miss──> store ──miss──> single-flight (this process)
                                        └─> lease (all processes/machines)
                                              ├─ stored meanwhile? serve it
                                              └─ fetch original -> failed before? -> render -> put

The render happens under both the in-process single-flight and the store's
lease, so it happens once however many requests, processes or machines ask.
A render that failed because of its input is remembered by the original's
identity (:mod:`imgproxy.cache.failures`) and answered without decoding again.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import cast

from .cache.failures import FailedOriginals
from .cache.flight import SingleFlight
from .cache.memory import MemoryTier, NoMemoryTier
from .errors import ImgproxyError
from .metrics import RENDER_SECONDS, RENDERS, STORE_ERRORS
from .presets import Preset
from .render import Limits, Rendered, RenderJob
from .stores import Blob, OriginalStore, VariantStore
from .urls import VariantRequest
from .workers import Renderer

log = logging.getLogger("imgproxy")

#: What ``get`` answers: the variant key, the variant, and the tier that served it.
Served = tuple[str, Blob, str]


def variant_key(request: VariantRequest, preset: Preset) -> str:
    """Store key; the preset's digest retires renders of an edited preset, and
    a ladder width or focal point follows it: ``card/<digest>@w640/shop/42.webp``."""
    return f"{preset.name}/{preset.digest}{request.modifiers}/{request.id}.{request.fmt}"


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
        blob = self.memory.get(key)
        if blob is not None:
            return key, blob, "memory"
        blob = await self.store.get(key)
        if blob is not None:
            self.memory.put(key, blob)
            return key, blob, "store"
        return await self._flight.run(key, lambda: self._produce(key, request, preset))

    async def _produce(self, key: str, request: VariantRequest, preset: Preset) -> Served:
        # A render place first: a burst of misses is refused (503) before it
        # waits on leases or downloads originals.
        with self.renderer.admit():
            return await self._render(key, request, preset)

    async def _render(self, key: str, request: VariantRequest, preset: Preset) -> Served:
        async with self.store.lease(key) as stored:
            if stored is not None:  # another process rendered it while we waited
                self.memory.put(key, stored)
                return key, stored, "store"
            original = await self.originals.fetch(request.id)
            self.failed.check(original.identity, key)
            started = time.perf_counter()
            try:
                rendered = cast(Rendered, await self.renderer.run(
                    RenderJob(original.source, preset.at_width(request.width) if request.width else preset,
                              request.fmt, self.limits, focus=request.focus)
                ))
            except ImgproxyError as exc:
                self.failed.remember(original.identity, key, exc)
                raise
            RENDER_SECONDS.labels(request.fmt).observe(time.perf_counter() - started)
            RENDERS.labels(preset.name, request.fmt).inc()
            blob = await self._put(key, Blob.of(rendered.body, time.time()),
                                   {"preset-digest": preset.digest, "source": original.identity})
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

