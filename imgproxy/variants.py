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
from dataclasses import dataclass

from .cache.failures import FailedOriginals
from .cache.flight import SingleFlight
from .cache.memory import MemoryTier, NoMemoryTier
from .errors import ImgproxyError
from .metrics import RENDER_SECONDS, RENDERS, STORE_ERRORS
from .presets import Preset
from .render import Limits, RenderJob
from .stores import OriginalStore, Variant, VariantStore
from .urls import VariantRequest
from .workers import Renderer

log = logging.getLogger("imgproxy")


def variant_key(request: VariantRequest, preset: Preset) -> str:
    """Store key; the preset's hash retires renders of an edited preset."""
    return f"{preset.name}/{preset.digest}/{request.id}.{request.fmt}"


@dataclass
class Variants:
    originals: OriginalStore
    store: VariantStore
    memory: MemoryTier | NoMemoryTier
    renderer: Renderer
    limits: Limits

    def __post_init__(self) -> None:
        self._flight: SingleFlight[tuple[Variant, str]] = SingleFlight()
        self.failed = FailedOriginals()

    async def get(self, request: VariantRequest, preset: Preset) -> tuple[Variant, str]:
        """The variant and the tier that served it: memory, store or render."""
        key = variant_key(request, preset)
        variant = self.memory.get(key)
        if variant is not None:
            return variant, "memory"
        variant = await self.store.get(key)
        if variant is not None:
            self.memory.put(key, variant)
            return variant, "store"
        return await self._flight.run(key, lambda: self._produce(key, request, preset))

    async def _produce(self, key: str, request: VariantRequest, preset: Preset) -> tuple[Variant, str]:
        # A render place first: a burst of misses is refused (503) before it
        # waits on leases or downloads originals.
        with self.renderer.admit():
            return await self._render(key, request, preset)

    async def _render(self, key: str, request: VariantRequest, preset: Preset) -> tuple[Variant, str]:
        async with self.store.lease(key) as stored:
            if stored is not None:  # another process rendered it while we waited
                self.memory.put(key, stored)
                return stored, "store"
            original = await self.originals.fetch(request.id)
            self.failed.check(original.identity, key)
            started = time.perf_counter()
            try:
                rendered = await self.renderer.run(
                    RenderJob(original.source, preset, request.fmt, self.limits)
                )
            except ImgproxyError as exc:
                self.failed.remember(original.identity, key, exc)
                raise
            RENDER_SECONDS.labels(request.fmt).observe(time.perf_counter() - started)
            RENDERS.labels(preset.name, request.fmt).inc()
            variant = Variant.make(rendered.body, request.content_type, time.time())
            metadata = {"preset-digest": preset.digest, "source": original.identity}
            try:
                if not await self.store.put(key, variant, metadata):
                    # Another holder stored it first (we outlived our lease):
                    # serve theirs, so every client sees the same bytes.
                    variant = await self.store.get(key) or variant
            except (ImgproxyError, OSError) as exc:
                # The render is good; serve it and let the next miss store it.
                STORE_ERRORS.labels("put").inc()
                log.error("variant store write failed for %s: %s", key, exc)
            self.memory.put(key, variant)
            return variant, "render"
