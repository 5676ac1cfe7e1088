"""Where renders run: the one seam between the server and the render pipeline.

Three renderers with one interface (``admit()``, ``await run(job)`` for any
job of :mod:`imgproxy.render.jobs`, ``await render(job)``, ``pending``,
``workers``, ``idle``, ``aclose()``), picked by ``render_mode`` and by whether
``serve`` runs a render pool:

- ``ThreadRenderer`` runs :func:`imgproxy.render.render` in a thread pool
  (libvips releases the GIL). Fast, but a decoder that crashes or runs away
  takes the server process with it, and a render past its deadline can only
  be abandoned, not stopped.
- ``ProcessRenderer`` runs it in ``concurrency`` worker processes
  (:mod:`.child`), each capped with ``RLIMIT_AS``
  (``worker_memory_mb``) and a per-job ``RLIMIT_CPU`` (``worker_cpu_seconds``),
  started with ``subprocess`` (fork+exec: nothing of the server's libvips
  threads or memory is inherited) and a clean environment, so a compromised
  decoder finds no signing key or cloud credential. One job at a time per
  worker over a socket pair.
- ``RemoteRenderer`` (:mod:`.remote`), when ``serve --workers N`` runs in
  process mode: the workers belong to one pool process for the machine
  (:mod:`.pool`, a ``ProcessRenderer`` of N x ``concurrency`` workers) that
  every server process submits jobs to over a Unix socket, so a keep-alive
  connection pinned to one server process can use every worker. The server
  process keeps admission, the deadline and decoding the worker's
  reply, so outcomes are those of ``ProcessRenderer``; hanging up stops the
  job in the pool; a dead pool is 503 until ``serve`` has started another.

Both bound the renders in flight: ``concurrency`` run, ``queue`` more wait, and
past that a render is refused at once with 503 and ``Retry-After``; the place
is taken (``admit()``) before the original is fetched. One deadline,
``render_timeout`` (a fan-out job: once per variant it makes), covers waiting
for a thread or worker plus rendering; in process mode the parent SIGKILLs a
worker past it. A dead worker is replaced
in the background and the server keeps serving; how a request ends when its
worker dies is the table under "Isolated rendering" in docs/HOSTILE_INPUT.md.

Originals reach a worker without copies through the socket: a local store's
file by its path, an original fetched from S3 or HTTP or uploaded by its spool
file (:mod:`imgproxy.stores.spool`). Only a source of a few bytes (the health
check's 2x2 PNG) travels inside the job; one over :data:`.codec.MAX_JOB` is
refused before it is sent.

``process`` is the default. ``bench/profilers/isolation.py`` (40 renders of a 2 MP JPEG
to 1200px WebP through a real server, 2 at a time, modes alternating) could
not tell the two apart on our shared 2-core machine: per-run ratios
process/thread of 0.93 to 1.19 under a load average of 5, 0.99 for the
pooled medians, and 0.99 for the renderers alone without HTTP. A render's CPU
dwarfs one socket round trip and the variant's bytes, so isolation costs
within the 5% we allowed, and it is what keeps a decoder crash, a memory
bomb or a runaway render from taking the server with it. ``thread`` stays for
trusted originals and for debugging (a render in this process can be
stepped through).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from ..config import Settings
from ..render import Job, Rendered, RenderJob, Result
from .base import RendererBase
from .processes import ProcessRenderer
from .threads import ThreadRenderer

if TYPE_CHECKING:
    from .remote import RemoteRenderer

__all__ = ["ProcessRenderer", "Renderer", "RendererBase", "ThreadRenderer", "open_renderer"]


class Renderer(Protocol):
    pending: int

    @property
    def workers(self) -> int: ...

    @property
    def idle(self) -> int: ...

    def admit(self) -> contextlib.AbstractContextManager[None]:
        """A place among the jobs in flight, or 503 at once when there is none."""

    async def run(self, job: Job, started: Callable[[], object] | None = None) -> Result:
        """Run ``job`` in an admitted place (waits for a free thread/worker);
        ``started`` is called when a thread or worker takes it."""

    async def render(self, job: RenderJob) -> Rendered:
        """``admit()`` and ``run(job)`` in one."""

    async def aclose(self) -> None: ...


async def open_renderer(settings: Settings) -> ThreadRenderer | ProcessRenderer | RemoteRenderer:
    """The renderer ``render_mode`` names, started; the machine's pool when
    ``serve`` runs one (``--workers`` above 1, process mode)."""
    s = settings
    # Imported here: ``python -m imgproxy.workers.pool`` runs this package's __init__ first.
    from .pool import POOL_ENV
    from .remote import RemoteRenderer

    pool = os.environ.get(POOL_ENV)
    if s.render_mode == "process" and pool:
        # Admits as many renders as the whole pool runs, so one process can keep it busy.
        return RemoteRenderer(pool, s.concurrency, s.render_queue, s.render_timeout)
    if s.render_mode == "process":  # serve --workers 1, or a batch command: the machine's workers
        renderer = ProcessRenderer(s.concurrency, s.render_queue, s.render_timeout,
                                   s.worker_memory_mb, s.worker_cpu_seconds, s.vips_concurrency)
        await renderer.start()
        return renderer
    return ThreadRenderer(s.process_concurrency, s.render_queue, s.render_timeout, s.vips_concurrency)
