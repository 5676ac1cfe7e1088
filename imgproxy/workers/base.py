"""What both renderers share: the bounded count of jobs in flight and the deadline."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TypeVar, cast

from ..errors import GatewayTimeout, RenderTimeout, Unavailable
from ..render import FanoutJob, Job, Rendered, RenderJob, Result

R = TypeVar("R", bound=Result)

#: Restarting what keeps failing to start (a worker, the render pool): the first
#: retry after this many seconds, each next one twice as late, never later than the last.
RESTART_FIRST, RESTART_LAST = 0.5, 30.0


def restart_delay(previous: float) -> float:
    """How long to wait before the next try to start a worker or the pool, after
    waiting ``previous`` seconds (0: none yet) before the one that just failed."""
    return min(max(previous * 2, RESTART_FIRST), RESTART_LAST)


class RendererBase:
    """``concurrency`` jobs run and ``queue`` more wait; past that, 503.

    ``admit()`` is taken before the original is fetched, so a burst of misses
    is refused before it downloads anything.
    """

    concurrency: int
    capacity: int
    pending: int
    timeout: float
    _closed: bool = False

    @property
    def workers(self) -> int:
        return self.concurrency

    @property
    def idle(self) -> int:
        """Threads or workers free to take a job now."""
        raise NotImplementedError

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

    async def run(self, job: Job, started: Callable[[], object] | None = None) -> Result:
        """Run ``job`` in an admitted place (waits for a free thread or worker);
        ``started`` is called when a thread or worker takes it."""
        raise NotImplementedError

    async def render(self, job: RenderJob) -> Rendered:
        """``admit()`` and ``run(job)`` in one, for a single variant."""
        with self.admit():
            return cast(Rendered, await self.run(job))

    def deadline(self, job: Job) -> float:
        """``render_timeout`` for each variant the job makes: a fan-out's eight
        variants of a camera photo do not have to fit in one variant's time."""
        return self.timeout * len(job.targets) if isinstance(job, FanoutJob) else self.timeout

    def too_slow(self, job: Job, rendering: bool) -> GatewayTimeout:
        """The deadline passed; a :class:`RenderTimeout` if the job had its worker
        (the input's cost), a plain 504 if it was still waiting for one (load)."""
        kind = RenderTimeout if rendering else GatewayTimeout
        return kind(f"render took longer than {self.deadline(job):g}s", limit="render_timeout")

    async def aclose(self) -> None:
        pass
