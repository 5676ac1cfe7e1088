"""create_app(settings): the one place where things are wired together.

The lifespan owns everything shared: stores and their clients, the renderer,
the memory tier. ``/v/`` requests go straight to :class:`VariantEndpoint`;
everything else (``/healthz``, ``/metrics``) goes through Starlette.
"""

from __future__ import annotations

import importlib
import logging
import time
from contextlib import asynccontextmanager
from typing import Any, AsyncIterator
from urllib.parse import urlsplit

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .cache.memory import memory_tier
from .clients import Clients
from .config import Settings, load_settings
from .errors import ImgproxyError, Unavailable
from .keys import resolve_keys
from .metrics import exposition
from .presets import Preset, load_presets
from .render import Limits, RenderJob, Source, render
from .routes import Receive, Scope, Send, VariantEndpoint, send_error
from .stores import OriginalStore, VariantStore
from .variants import Variants
from .workers import Renderer, open_renderer

log = logging.getLogger("imgproxy")

# A 2x2 PNG: /healthz renders it through libvips end to end.
_PROBE = Source(data=bytes.fromhex(
    "89504e470d0a1a0a0000000d49484452000000020000000208020000"
    "00fdd49a730000000b4944415408996360400600000e0001b19aea06"
    "0000000049454e44ae426082"
))
_PROBE_PRESET = Preset(name="healthz", width=1, height=1)


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


async def open_store(table: dict[str, str], url: str, settings: Settings, clients: Clients) -> Any:
    """The store for ``url``'s scheme (settings validated the scheme already)."""
    module, _, name = table[urlsplit(url.split(",")[0].strip()).scheme].partition(":")
    return await getattr(importlib.import_module(module), name).open(url, settings, clients)


def limits(settings: Settings) -> Limits:
    s = settings
    return Limits(max_source_pixels=s.max_source_pixels, max_frames=s.max_frames,
                  max_output_pixels=s.max_output_pixels, max_source_bytes=s.max_source_bytes,
                  max_svg_elements=s.max_svg_elements)


class App:
    """Routes ``/v/`` to the variant endpoint, the rest to Starlette."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.presets = load_presets(settings.presets)  # a bad preset stops start-up
        self.keys = resolve_keys(settings)
        self.endpoint: VariantEndpoint | None = None
        self.renderer: Renderer | None = None
        self.starlette = Starlette(
            routes=[Route("/healthz", self.healthz), Route("/metrics", self.metrics)],
            lifespan=self.lifespan,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v/"):
            if self.endpoint is None:
                await send_error(send, _starting())
                return
            await self.endpoint(scope, receive, send)
            return
        await self.starlette(scope, receive, send)

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        s = self.settings
        clients = Clients(s)  # one S3 client and one HTTP client per process, made on first use
        try:
            originals: OriginalStore = await open_store(ORIGINAL_STORES, s.originals, s, clients)
            store: VariantStore = await open_store(VARIANT_STORES, s.variants, s, clients)
            self.renderer = await open_renderer(s)
        except BaseException:
            await clients.aclose()
            raise
        variants = Variants(originals, store, memory_tier(s.memory_cache_mb * 1024 * 1024),
                            self.renderer, limits(s))
        self.endpoint = VariantEndpoint(self.keys, self.presets, variants)
        log.info("imgproxy ready: %d presets, originals %s, variants %s",
                 len(self.presets), s.originals, s.variants)
        try:
            yield
        finally:
            # Shutdown. 1. uvicorn has stopped accepting and 2. drained the
            # requests in flight; 3. new /v/ requests get 503 from here on;
            # 4. close the renderer, the stores, then the shared clients.
            self.endpoint = None
            await self.renderer.aclose()
            await store.aclose()
            await originals.aclose()
            await clients.aclose()

    async def healthz(self, request: Request) -> Response:
        assert self.renderer is not None
        started = time.perf_counter()
        try:
            with anyio.fail_after(5):
                await anyio.to_thread.run_sync(
                    render, RenderJob(_PROBE, _PROBE_PRESET, "png", Limits())
                )
        except (ImgproxyError, TimeoutError) as exc:
            return JSONResponse({"status": "unhealthy", "detail": str(exc)}, status_code=503)
        return JSONResponse(
            {"status": "ok", "render_ms": round((time.perf_counter() - started) * 1000, 2),
             "renders_pending": self.renderer.pending, "render_workers": self.renderer.workers},
            headers={"cache-control": "no-store"},
        )

    async def metrics(self, request: Request) -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type, headers={"cache-control": "no-store"})


def _starting() -> ImgproxyError:
    return Unavailable("server is starting", retry_after=1)


def create_app(settings: Settings | None = None) -> App:
    return App(settings or load_settings())


def create_app_from_env() -> Any:
    """uvicorn factory for worker processes: settings come from the environment."""
    return create_app(load_settings())
