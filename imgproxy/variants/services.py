"""Everything a render needs, built and closed in one place: ``open_services(settings)``.

The web app's lifespan, ``/healthz`` and the CLI commands that render without
a server (warm-up, the queue consumer) all open the same services::

    async with open_services(settings) as services:
        key, blob, tier, timings = await services.variants.serve(request, preset)

Stores are picked from a table by the URL scheme of their setting; each
implementation has an async ``open(url, settings, clients)`` class method,
and network stores share one client per process (:class:`Clients`).
"""

from __future__ import annotations

import importlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio

from ..cache.memory import memory_tier
from ..config import ConfigError, Settings
from ..errors import ImgproxyError
from ..keys import resolve_keys
from ..presets import Preset, PresetError, load_presets
from ..render import Limits, Rendered, RenderJob, Source
from ..stores import OriginalStore, VariantStore
from ..stores.clients import Clients
from ..urls import check_id
from ..workers import Renderer, open_renderer
from .service import VariantService

log = logging.getLogger("imgproxy")

#: URL scheme -> store implementation, imported only when used.
ORIGINAL_STORES = {
    "file": "imgproxy.stores.local:LocalOriginals",
    "s3": "imgproxy.stores.s3:S3Originals",
    "http": "imgproxy.stores.http:HttpOriginals",
    "https": "imgproxy.stores.http:HttpOriginals",
}
VARIANT_STORES = {
    "file": "imgproxy.stores.local:LocalVariants",
    "s3": "imgproxy.stores.s3:S3Variants",
}

# A 2x2 PNG: the health check renders it through a render worker, end to end.
_PROBE = Source(data=bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000020000000208020000"
    "00fdd49a730000000b4944415408996360400600000e0001b19aea06"
    "0000000049454e44ae426082"
))
_PROBE_PRESET = Preset(name="healthz", width=1, height=1)


async def open_store(table: Mapping[str, str], url: str, settings: Settings, clients: Clients) -> Any:
    """The store for ``url``'s scheme (settings validated the scheme already)."""
    module, _, name = table[urlsplit(url.split(",")[0].strip()).scheme].partition(":")
    return await getattr(importlib.import_module(module), name).open(url, settings, clients)


def limits(settings: Settings) -> Limits:
    s = settings
    return Limits(max_source_pixels=s.max_source_pixels, max_frames=s.max_frames,
                  max_output_pixels=s.max_output_pixels, max_source_bytes=s.max_source_bytes,
                  max_svg_elements=s.max_svg_elements, input_formats=frozenset(s.input_formats),
                  max_source_side=s.max_source_side)


@dataclass
class Services:
    settings: Settings
    presets: Mapping[str, Preset]
    keys: tuple[str, ...]
    originals: OriginalStore
    store: VariantStore
    renderer: Renderer
    variants: VariantService
    clients: Clients  # the shared network clients (the queue commands take SQS from it)

    async def check_render(self) -> bool:
        """Render a tiny PNG through the renderer (a worker, in process mode);
        False when every worker is busy, which is load, not a fault (a stuck
        worker is killed at ``render_timeout``). Raises ImgproxyError when
        rendering does not work."""
        if self.renderer.workers and not self.renderer.idle:
            return False  # busy; with no worker at all (a render pool away) the probe must fail
        result = await self.renderer.run(RenderJob(_PROBE, _PROBE_PRESET, "png", Limits()))
        if not isinstance(result, Rendered) or not result.body:
            raise ImgproxyError("the health render returned nothing")
        return True


@asynccontextmanager
async def open_services(settings: Settings) -> AsyncIterator[Services]:
    """Build every service from ``settings``; on exit close them in reverse:
    the renderer, the variant store, the originals store, then the clients."""
    s = settings
    presets = load_presets(s.presets)  # a bad preset stops start-up
    keys = resolve_keys(s)
    async with AsyncExitStack() as stack:
        clients = Clients(s)  # one S3 and one HTTP client per process, made on first use
        stack.push_async_callback(clients.aclose)
        originals: OriginalStore = await open_store(ORIGINAL_STORES, s.originals, s, clients)
        stack.push_async_callback(originals.aclose)
        presets = await _resolve_watermarks(presets, originals, stack)  # a missing one stops start-up
        store: VariantStore = await open_store(VARIANT_STORES, s.variants, s, clients)
        stack.push_async_callback(store.aclose)
        renderer = await open_renderer(s)
        stack.push_async_callback(renderer.aclose)
        memory = memory_tier(s.memory_cache_mb * 1024 * 1024)
        variants = VariantService(originals, store, memory, renderer, limits(s),
                                  avif_effort=s.avif_effort, avif_eager_effort=s.avif_eager_effort)
        await _check_fallback(s.fallback, variants)  # a missing or broken one stops start-up
        yield Services(s, presets, keys, originals, store, renderer, variants, clients)


async def _check_fallback(id: str, variants: VariantService) -> None:
    """IMGPROXY_FALLBACK is there and its header decodes (a probe in a worker, no pixels);
    it is then fetched and rendered like any original, once per variant."""
    if not id:
        return
    try:
        check_id(id)
        await variants.has_alpha(id)
    except ImgproxyError as exc:
        raise ConfigError(f"IMGPROXY_FALLBACK: {id!r}: {exc.detail}") from exc


async def _resolve_watermarks(presets: Mapping[str, Preset], originals: OriginalStore,
                              stack: AsyncExitStack) -> dict[str, Preset]:
    """Watermarks named by an original's id, read once at start-up. A local
    store gives its file's path; an S3 or HTTP original is fetched once and
    kept in a private folder of this process for its render workers."""
    resolved = dict(presets)
    folder = ""
    for name, preset in presets.items():
        mark = preset.watermark
        if mark is None or mark.sha256:
            continue  # none, or a bundled file read by load_presets
        try:
            original = await originals.fetch(mark.image)
        except ImgproxyError as exc:
            raise PresetError(f"preset {name!r}: watermark {mark.image!r}: {exc.detail}") from exc
        try:
            path = original.source.path
            if path is None or original.spooled is not None:  # fetched: keep a copy of our own
                if not folder:
                    folder = tempfile.mkdtemp(prefix="imgproxy-watermarks-")
                    stack.callback(shutil.rmtree, folder, True)
                path = f"{folder}/{name}"
                await anyio.Path(path).write_bytes(original.source.read())
        finally:
            original.close()
        resolved[name] = preset.with_watermark_file(path)
    return resolved
