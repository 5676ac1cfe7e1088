"""create_app(settings): the web app over :func:`imgproxy.variants.services.open_services`.

The lifespan opens the services (stores and their clients, the renderer, the
memory tier) and closes them at shutdown. ``/v/`` requests go straight to
:class:`VariantEndpoint`, ``/meta/`` to :class:`MetaEndpoint`, GET and HEAD
``/o/`` to :class:`OriginalsEndpoint`; everything else (``/healthz``,
``/readyz``, ``/metrics``, and in development the gallery at ``/``) goes
through Starlette, whose own errors are our JSON errors (:mod:`.web.errors`).
Around it all, :class:`RequestLog` sets the request id and ``Date`` and logs
each request.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ..config import Settings, load_settings
from ..errors import ImgproxyError
from ..metrics import ProcessSampler, exposition
from ..variants.services import Services, open_services
from ..variants.uploads import Ingest
from . import gallery, ready
from .allow import AllowList, networks
from .cors import Cors
from .endpoint import VariantEndpoint
from .errors import exception_handlers
from .logs import RequestLog, log_format
from .meta import MetaEndpoint
from .originals import OriginalsEndpoint
from .responses import Receive, Scope, Send
from .skeleton import starting
from .uploads import IngestEndpoint

log = logging.getLogger("imgproxy")

#: How long one health render's answer is reused: /healthz is on the public
#: port, and each fresh answer costs a render.
HEALTH_TTL = 1.0
#: The endpoints whose responses CORS opens to other origins' pages.
_CORS_PREFIXES = ("/v/", "/meta/", "/o/")


class App:
    """Routes ``/v/`` to the variant endpoint, the rest to Starlette."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: Services | None = None
        self.endpoint: VariantEndpoint | None = None
        self.meta: MetaEndpoint | None = None
        self.originals: OriginalsEndpoint | None = None
        self.ingest: IngestEndpoint | None = None
        self._health: tuple[float, Response] | None = None
        self._ready: tuple[float, Response] | None = None
        self.cors = Cors(settings.cors_origins)
        routes = [Route("/healthz", self.healthz), Route("/readyz", self.readyz), Route("/metrics", self.metrics)]
        if settings.env == "development":
            routes.append(Route("/", self.gallery))
        starlette = Starlette(routes=routes, lifespan=self.lifespan,
                              exception_handlers=exception_handlers(settings.not_found_max_age))
        # No 307 from /metrics/ to /metrics: Starlette builds that Location from
        # the request's Host header, which anyone can set.
        starlette.router.redirect_slashes = False
        self.starlette = AllowList(starlette, networks(settings.metrics_allow))
        self._asgi = RequestLog(self._route, enabled=settings.access_log,
                                json_lines=log_format(settings) == "json")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._asgi(scope, receive, send)

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("method") == "OPTIONS" and self.cors.on and scope["path"].startswith(_CORS_PREFIXES):
            await self.cors.preflight(scope, send)  # a CORS preflight; with CORS off, the endpoints' 405
            return
        if scope["type"] == "http" and scope["path"].startswith("/v/"):
            if self.endpoint is None:
                await starting(scope, receive, send)
                return
            await self.endpoint(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"].startswith("/meta/"):
            await (self.meta or starting)(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"].startswith("/o/") and scope["method"] in ("GET", "HEAD"):
            await (self.originals or starting)(scope, receive, send)
            return
        if scope["type"] == "http" and scope["path"].startswith("/o/") and scope["method"] == "PUT":
            await (self.ingest or starting)(scope, receive, send)
            return
        await self.starlette(scope, receive, send)

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with open_services(self.settings) as services:
            self.services = services
            self.endpoint = VariantEndpoint(services.keys, services.presets, services.variants,
                                            not_found_max_age=self.settings.not_found_max_age,
                                            auto=services.settings.auto_format, cors=self.cors,
                                            fallback=self.settings.fallback,
                                            fallback_ok=self.settings.fallback_status == "200",
                                            surrogate=self.settings.surrogate_key_header)
            self.meta = MetaEndpoint(services.keys, services.variants, self.settings.meta_gps, cors=self.cors,
                                     surrogate=self.settings.surrogate_key_header)
            self.originals = OriginalsEndpoint(services.keys, services.originals, cors=self.cors)
            for endpoint in (self.meta, self.originals):  # a missing original: one 404 lifetime everywhere
                endpoint.not_found_max_age = self.settings.not_found_max_age
            uploads = _uploads(services)
            self.ingest = IngestEndpoint(self.settings.ingest_tokens, uploads)
            log.info("imgproxy ready: %d presets, originals %s, variants %s",
                     len(services.presets), self.settings.originals, self.settings.variants)
            sampler = ProcessSampler().start()  # imgproxy_process_*: every few seconds, never per request
            try:
                yield
            finally:
                # Shutdown. 1. uvicorn has stopped accepting and 2. drained the
                # requests in flight; 3. new /v/ requests get 503 from here on;
                # 4. background eager renders of uploads finish; 5. open_services
                # closes the renderer, the stores, the clients.
                self.endpoint = self.meta = self.originals = self.ingest = None
                if uploads is not None:
                    await uploads.drain()
                self.services = None
                sampler.stop()
                self._asgi.lines.flush()

    async def healthz(self, request: Request) -> Response:
        now = time.monotonic()
        if self._health is not None and now - self._health[0] < HEALTH_TTL:
            return self._health[1]
        self._health = (now, await self._check_health())
        return self._health[1]

    async def _check_health(self) -> Response:
        services = self.services
        if services is None:
            return JSONResponse({"status": "starting"}, status_code=503, headers={"cache-control": "no-store"})
        renderer = services.renderer
        state = {"renders_pending": renderer.pending, "render_workers": renderer.workers}
        started = time.perf_counter()
        try:
            with anyio.fail_after(5):
                rendered = await services.check_render()
        except (ImgproxyError, TimeoutError) as exc:
            return JSONResponse({"status": "unhealthy", "detail": str(exc), **state}, status_code=503,
                                headers={"cache-control": "no-store"})
        render = round((time.perf_counter() - started) * 1000, 2) if rendered else "skipped: every worker is busy"
        return JSONResponse({"status": "ok", "render_ms": render, **state}, headers={"cache-control": "no-store"})

    async def readyz(self, request: Request) -> Response:
        """200 when the stores answer and a worker renders; else 503 naming what is wrong."""
        now = time.monotonic()
        if self._ready is not None and now - self._ready[0] < HEALTH_TTL:
            return self._ready[1]
        services = self.services
        found = {"server": "starting"} if services is None else await ready.problems(services)
        body = {"status": "not ready", "problems": found} if found else {"status": "ready"}
        response = JSONResponse(body, status_code=503 if found else 200, headers={"cache-control": "no-store"})
        self._ready = (now, response)
        return response

    async def gallery(self, request: Request) -> Response:
        services = self.services
        if services is None:
            return JSONResponse({"status": "starting"}, status_code=503, headers={"cache-control": "no-store"})
        samples = await gallery.samples_in(services.originals)
        return HTMLResponse(gallery.page(services.keys[0], services.presets, samples),
                            headers={"cache-control": "no-store"})

    async def metrics(self, request: Request) -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type, headers={"cache-control": "no-store"})


def _uploads(services: Services) -> Ingest | None:
    """Ingest over the originals store, when uploads are on and the store can take them."""
    if not services.settings.ingest_tokens:
        return None
    try:
        uploads = Ingest(services)
    except ImgproxyError as exc:
        log.warning("uploads are off: %s", exc.detail)
        return None
    uploads.targets(None)  # an unknown preset in IMGPROXY_INGEST_RENDER stops start-up
    return uploads


def create_app(settings: Settings | None = None) -> App:
    return App(settings or load_settings())


def create_app_from_env() -> Any:
    """uvicorn factory for worker processes: settings come from the environment."""
    return create_app(load_settings())
