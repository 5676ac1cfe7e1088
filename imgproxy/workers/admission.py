"""The bounded count of renders in flight, shared by both renderers."""

from __future__ import annotations

import contextlib
from typing import Iterator

from ..errors import GatewayTimeout, Unavailable
from ..render import RenderJob, Rendered


class Admission:
    """``concurrency`` renders run and ``queue`` more wait; past that, 503.

    ``admit()`` is taken before the original is fetched, so a burst of misses
    is refused before it downloads anything.
    """

    capacity: int
    pending: int
    _closed: bool = False

    @contextlib.contextmanager
    def admit(self) -> Iterator[None]:
        if self._closed:
            raise Unavailable("server is shutting down", retry_after=1)
        if self.pending >= self.capacity:
            raise Unavailable("render queue is full", retry_after=1)
        self.pending += 1
        try:
            yield
        finally:
            self.pending -= 1

    timeout: float

    async def run(self, job: RenderJob) -> Rendered:
        raise NotImplementedError

    def too_slow(self) -> GatewayTimeout:
        return GatewayTimeout(f"render took longer than {self.timeout:g}s", limit="render_timeout")

    async def render(self, job: RenderJob) -> Rendered:
        with self.admit():
            return await self.run(job)


