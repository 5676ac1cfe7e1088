"""In-thread rendering: fast, trusting, and impossible to stop (see the package docstring)."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from ..render import Job, Result, configure, run_job
from .base import RendererBase


class ThreadRenderer(RendererBase):
    def __init__(self, concurrency: int, queue: int, timeout: float, vips_concurrency: int = 1) -> None:
        configure(vips_concurrency)
        self.concurrency = concurrency
        self.capacity = concurrency + queue
        self.timeout = timeout
        self._limiter = anyio.CapacityLimiter(concurrency)
        self.pending = 0

    @property
    def idle(self) -> int:
        return int(self.concurrency - self._limiter.borrowed_tokens)

    async def run(self, job: Job, started: Callable[[], object] | None = None) -> Result:
        began: list[bool] = []

        def in_thread() -> Result:
            began.append(True)
            if started is not None:
                started()
            return run_job(job)

        try:
            # A thread cannot be killed: on timeout the caller is answered and
            # the thread finishes in the background (process mode kills it).
            with anyio.fail_after(self.deadline(job)):
                return await anyio.to_thread.run_sync(in_thread, limiter=self._limiter, abandon_on_cancel=True)
        except TimeoutError:
            raise self.too_slow(job, rendering=bool(began)) from None
