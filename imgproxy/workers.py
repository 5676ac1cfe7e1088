"""Where renders run: the one seam between the server and the render pipeline.

``ThreadRenderer`` runs :func:`imgproxy.render.render` in a thread pool capped
at ``concurrency`` (libvips releases the GIL). Renders beyond the pool wait in
a queue of ``queue`` places; past that a new render is refused at once with
503 and ``Retry-After`` instead of piling up.
"""

from __future__ import annotations

import anyio

from .errors import GatewayTimeout, Unavailable
from .render import RenderJob, Rendered, configure, render


class ThreadRenderer:
    def __init__(self, concurrency: int, queue: int, timeout: float, vips_concurrency: int = 1) -> None:
        configure(vips_concurrency)
        self.concurrency = concurrency
        self.capacity = concurrency + queue
        self.timeout = timeout
        self._limiter = anyio.CapacityLimiter(concurrency)
        self.pending = 0

    async def render(self, job: RenderJob) -> Rendered:
        if self.pending >= self.capacity:
            raise Unavailable("render queue is full", retry_after=1)
        self.pending += 1
        try:
            # A thread cannot be killed: on timeout the caller is answered and
            # the thread finishes in the background (process mode kills it).
            with anyio.fail_after(self.timeout):
                return await anyio.to_thread.run_sync(
                    render, job, limiter=self._limiter, abandon_on_cancel=True
                )
        except TimeoutError:
            raise GatewayTimeout(f"render took longer than {self.timeout:g}s", limit="render_timeout") from None
        finally:
            self.pending -= 1

    async def aclose(self) -> None:
        pass
