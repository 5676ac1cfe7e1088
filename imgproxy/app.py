"""create_app(settings): the web app over :func:`imgproxy.services.open_services`.

The lifespan opens the services (stores and their clients, the renderer, the
memory tier) and closes them at shutdown. ``/v/`` requests go straight to
:class:`VariantEndpoint`; everything else (``/healthz``, ``/metrics``) goes
through Starlette.
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
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .config import Settings, load_settings
from .errors import ImgproxyError, Unavailable
from .metrics import exposition
from .services import Services, open_services
from .web.allow import AllowList, networks
from .web.endpoint import VariantEndpoint
from .web.responses import Receive, Scope, Send, send_error

log = logging.getLogger("imgproxy")

#: How long one health render's answer is reused: /healthz is on the public
#: port, and each fresh answer costs a render.
HEALTH_TTL = 1.0


class App:
    """Routes ``/v/`` to the variant endpoint, the rest to Starlette."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: Services | None = None
        self.endpoint: VariantEndpoint | None = None
        self._health: tuple[float, Response] | None = None
        self.starlette = AllowList(Starlette(
            routes=[Route("/healthz", self.healthz), Route("/metrics", self.metrics)],
            lifespan=self.lifespan,
        ), networks(settings.metrics_allow))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].startswith("/v/"):
            if self.endpoint is None:
                await send_error(send, Unavailable("server is starting", retry_after=1))
                return
            await self.endpoint(scope, receive, send)
            return
        await self.starlette(scope, receive, send)

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        async with open_services(self.settings) as services:
            self.services = services
            self.endpoint = VariantEndpoint(services.keys, services.presets, services.variants)
            log.info("imgproxy ready: %d presets, originals %s, variants %s",
                     len(services.presets), self.settings.originals, self.settings.variants)
            try:
                yield
            finally:
                # Shutdown. 1. uvicorn has stopped accepting and 2. drained the
                # requests in flight; 3. new /v/ requests get 503 from here on;
                # 4. open_services closes the renderer, the stores, the clients.
                self.endpoint = None
                self.services = None

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

    async def metrics(self, request: Request) -> Response:
        body, content_type = exposition()
        return Response(body, media_type=content_type, headers={"cache-control": "no-store"})


def create_app(settings: Settings | None = None) -> App:
    return App(settings or load_settings())


def create_app_from_env() -> Any:
    """uvicorn factory for worker processes: settings come from the environment."""
    return create_app(load_settings())
