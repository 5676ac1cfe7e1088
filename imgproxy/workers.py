"""Where renders run: the one seam between the server and the render pipeline.

Two renderers with one interface (``admit()``, ``await run(job)``, ``await
render(job)``, ``pending``, ``workers``, ``aclose()``), picked by ``render_mode``:

- ``ThreadRenderer`` runs :func:`imgproxy.render.render` in a thread pool
  (libvips releases the GIL). Fast, but a decoder that crashes or runs away
  takes the server process with it, and a render past its deadline can only
  be abandoned, not stopped.
- ``ProcessRenderer`` runs it in ``concurrency`` worker processes
  (:mod:`imgproxy.render.worker`), each capped with ``RLIMIT_AS``
  (``worker_memory_mb``) and a per-job ``RLIMIT_CPU`` (``worker_cpu_seconds``),
  started with ``subprocess`` (fork+exec: nothing of the server's libvips
  threads or memory is inherited) and a clean environment, so a compromised
  decoder finds no signing key or cloud credential. One job at a time per
  worker over a socket pair.

Both bound the renders in flight: ``concurrency`` run, ``queue`` more wait, and
past that a render is refused at once with 503 and ``Retry-After``; the place
is taken (``admit()``) before the original is fetched. One deadline,
``render_timeout``, covers waiting for a thread or worker plus rendering; in
process mode the parent SIGKILLs a worker past it. A dead worker is replaced in the
background and the server keeps serving. How a request ends when its worker
dies:

| worker outcome                                  | answer | remembered (variants.py) |
|---|---|---|
| past the deadline (we SIGKILL it)               | 504 ``render_timeout`` | no |
| SIGSEGV/SIGBUS/SIGILL/SIGFPE/SIGABRT            | 422: the decoder crashed on this input (glib aborts on a failed allocation under the memory cap) | yes |
| SIGXCPU (the job's CPU cap)                     | 422 ``worker_cpu_seconds`` | yes |
| MemoryError in the worker                       | 413 ``worker_memory_mb`` | yes |
| a codec reports a failed allocation             | 422, as any decoder error | yes |
| SIGKILL or anything else (OOM killer, operator) | 503 + Retry-After: not the input's fault, try again | no |

Originals reach a worker without copies through the socket: a local store's
file by its path, fetched bytes as a file in ``/dev/shm`` (shared memory)
that is unlinked when the render ends.

``process`` is the default. ``bench/isolation.py`` (40 renders of a 2 MP JPEG
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

import asyncio
import contextlib
import logging
import os
import pickle
import signal
import socket
import sys
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator, Protocol

import anyio

from .config import Settings
from .errors import (
    BadRequest, GatewayTimeout, ImgproxyError, NotFound, TooLarge, Unavailable, Undecodable,
    Unsupported,
)
from .render import RenderJob, Rendered, Source, configure, render
from .render.worker import JOB_HEADER, MAX_META, REPLY_HEADER

log = logging.getLogger("imgproxy.workers")

#: Signals with which a decoder dies on bad input (or a failed allocation).
_CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE,
                            signal.SIGABRT})
#: Errors a worker may report; anything else it sends is treated as a bug.
_ERRORS: dict[int, type[ImgproxyError]] = {
    400: BadRequest, 404: NotFound, 413: TooLarge, 415: Unsupported, 422: Undecodable,
    504: GatewayTimeout,
}
#: The worker's environment: enough to run Python and libvips, no secrets.
_ENV_NAMES = ("PATH", "LANG", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
_ENV_PREFIXES = ("LC_", "VIPS_", "G_")
_MAX_BODY = 1 << 30
_START_TIMEOUT = 30.0


class Renderer(Protocol):
    pending: int

    @property
    def workers(self) -> int: ...

    def admit(self) -> contextlib.AbstractContextManager[None]:
        """A place among the renders in flight, or 503 at once when there is none."""

    async def run(self, job: RenderJob) -> Rendered:
        """Render ``job`` in an admitted place (waits for a free thread/worker)."""

    async def render(self, job: RenderJob) -> Rendered:
        """``admit()`` and ``run(job)`` in one."""

    async def aclose(self) -> None: ...


class _Admission:
    """The bounded count of renders in flight, shared by both renderers.

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

    async def run(self, job: RenderJob) -> Rendered:
        raise NotImplementedError

    async def render(self, job: RenderJob) -> Rendered:
        with self.admit():
            return await self.run(job)


async def open_renderer(settings: Settings) -> ThreadRenderer | ProcessRenderer:
    """The renderer ``render_mode`` names, started."""
    s = settings
    configure(s.vips_concurrency)  # this process renders /healthz's probe in both modes
    if s.render_mode == "process":
        renderer = ProcessRenderer(s.concurrency, s.render_queue, s.render_timeout,
                                   s.worker_memory_mb, s.worker_cpu_seconds, s.vips_concurrency)
        await renderer.start()
        return renderer
    return ThreadRenderer(s.concurrency, s.render_queue, s.render_timeout, s.vips_concurrency)


class ThreadRenderer(_Admission):
    def __init__(self, concurrency: int, queue: int, timeout: float, vips_concurrency: int = 1) -> None:
        configure(vips_concurrency)
        self.concurrency = concurrency
        self.capacity = concurrency + queue
        self.timeout = timeout
        self._limiter = anyio.CapacityLimiter(concurrency)
        self.pending = 0

    @property
    def workers(self) -> int:
        return self.concurrency

    async def run(self, job: RenderJob) -> Rendered:
        try:
            # A thread cannot be killed: on timeout the caller is answered and
            # the thread finishes in the background (process mode kills it).
            with anyio.fail_after(self.timeout):
                return await anyio.to_thread.run_sync(
                    render, job, limiter=self._limiter, abandon_on_cancel=True
                )
        except TimeoutError:
            raise GatewayTimeout(f"render took longer than {self.timeout:g}s", limit="render_timeout") from None

    async def aclose(self) -> None:
        pass


class _Worker:
    """One worker process and our end of its socket."""

    def __init__(self, proc: asyncio.subprocess.Process, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.proc = proc
        self.reader = reader
        self.writer = writer

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None

    async def send(self, payload: bytes) -> None:
        self.writer.write(JOB_HEADER.pack(len(payload)) + payload)
        await self.writer.drain()

    async def receive(self) -> tuple[dict[str, Any], bytes]:
        meta_len, body_len = REPLY_HEADER.unpack(await self.reader.readexactly(REPLY_HEADER.size))
        if meta_len > MAX_META or body_len > _MAX_BODY:
            raise ConnectionError(f"worker {self.pid} sent a {meta_len}/{body_len} byte frame")
        meta = await self.reader.readexactly(meta_len)
        body = await self.reader.readexactly(body_len)
        return _json(meta), body

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    async def close(self) -> int:
        """Close the socket (an idle worker exits on EOF), reap, return the exit code."""
        self.writer.close()
        try:
            return await asyncio.wait_for(self.proc.wait(), 5)
        except asyncio.TimeoutError:
            self.kill()
            return await self.proc.wait()


class ProcessRenderer(_Admission):
    def __init__(self, concurrency: int, queue: int, timeout: float, memory_mb: int,
                 cpu_seconds: int, vips_concurrency: int = 1) -> None:
        self.concurrency = concurrency
        self.capacity = concurrency + queue
        self.timeout = timeout
        self.pending = 0
        self._args = [str(memory_mb), str(cpu_seconds), str(vips_concurrency)]
        self._idle: asyncio.Queue[_Worker] = asyncio.Queue()
        self._all: set[_Worker] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._spool = _spool_dir()

    @property
    def workers(self) -> int:
        return sum(1 for w in self._all if w.alive)

    @property
    def pids(self) -> list[int]:
        return sorted(w.pid for w in self._all if w.alive)

    async def start(self) -> None:
        workers = await asyncio.gather(*(self._spawn() for _ in range(self.concurrency)))
        for worker in workers:
            self._idle.put_nowait(worker)

    async def run(self, job: RenderJob) -> Rendered:
        try:
            with anyio.fail_after(self.timeout):
                worker = await self._checkout()
                return await self._run(worker, job)
        except TimeoutError:
            raise GatewayTimeout(f"render took longer than {self.timeout:g}s", limit="render_timeout") from None

    async def _checkout(self) -> _Worker:
        while True:
            worker = await self._idle.get()
            if worker.alive:
                return worker
            self._replace(worker)  # died while idle: not this request's problem

    async def _run(self, worker: _Worker, job: RenderJob) -> Rendered:
        try:
            source, spooled = await self._stage(job.source)
        except BaseException:
            self._idle.put_nowait(worker)
            raise
        try:
            await worker.send(pickle.dumps(replace(job, source=source)))
            meta, body = await worker.receive()
        except asyncio.CancelledError:  # the deadline (or shutdown): stop the render
            worker.kill()
            self._replace(worker)
            raise
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError):
            self._replace(worker)
            raise _death(await _exit_code(worker), worker.pid) from None
        finally:
            if spooled is not None:
                spooled.unlink(missing_ok=True)
        if meta.get("exit"):
            self._replace(worker)
        else:
            self._idle.put_nowait(worker)
        return _result(meta, body, worker.pid)

    async def _stage(self, source: Source) -> tuple[Source, Path | None]:
        """Fetched bytes go to a worker as a file in shared memory, not down the socket."""
        if source.data is None:
            return source, None
        fd, name = tempfile.mkstemp(dir=self._spool, prefix="src-")
        path = Path(name)
        try:
            await anyio.to_thread.run_sync(_write_all, fd, source.data)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return Source(path=name), path

    def _replace(self, worker: _Worker) -> None:
        """Reap ``worker`` and start another in the background."""
        if worker not in self._all:
            return
        self._all.discard(worker)
        self._background(self._reap_and_respawn(worker))

    async def _reap_and_respawn(self, worker: _Worker) -> None:
        code = await worker.close()
        if code not in (0, -signal.SIGKILL):
            log.warning("render worker %d exited with %s", worker.pid, _describe(code))
        delay = 0.0
        while not self._closed:
            try:
                self._idle.put_nowait(await self._spawn())
                return
            except (OSError, RuntimeError) as exc:
                delay = min(max(delay * 2, 0.5), 30.0)
                log.error("cannot start a render worker (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _spawn(self) -> _Worker:
        parent, child = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "imgproxy.render.worker", str(child.fileno()), *self._args,
                pass_fds=(child.fileno(),), env=_worker_env(), stdin=asyncio.subprocess.DEVNULL,
            )
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent, limit=1 << 20)
        worker = _Worker(proc, reader, writer)
        try:
            meta, _ = await asyncio.wait_for(worker.receive(), _START_TIMEOUT)
            if meta.get("ready") != proc.pid:
                raise ValueError("no ready message")
        except BaseException as exc:  # including cancellation: never leave it running
            worker.kill()
            writer.close()
            if isinstance(exc, (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError,
                                ValueError)):
                code = await worker.close()
                raise RuntimeError(f"render worker did not start ({_describe(code)})") from exc
            raise
        self._all.add(worker)
        return worker

    def _background(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        # 1. stop: new renders get 503; no more replacements.
        self._closed = True
        # 2. drain: uvicorn has drained requests, so every live worker is idle
        #    or running an orphaned render; closing the socket ends both.
        # 3. cancel: respawns in flight.
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        # 4. close: each worker exits on EOF; stragglers are killed.
        workers, self._all = list(self._all), set()
        await asyncio.gather(*(w.close() for w in workers), return_exceptions=True)
        with contextlib.suppress(OSError):
            os.rmdir(self._spool)


def _result(meta: dict[str, Any], body: bytes, pid: int) -> Rendered:
    if meta.get("ok") is True:
        return Rendered(body=body, width=int(meta["width"]), height=int(meta["height"]))
    error = _ERRORS.get(meta.get("status"))  # type: ignore[arg-type]
    if error is None:
        # A bug in the pipeline, reported by the worker: log it and answer 500,
        # as thread mode would.
        raise RuntimeError(f"render worker {pid}: {meta.get('detail')}\n"
                           f"{(meta.get('extra') or {}).get('traceback', '')}")
    extra = meta.get("extra") or {}
    raise error(str(meta.get("detail", "render failed"))[:500],
                **{str(k)[:40]: v for k, v in dict(extra).items()
                   if isinstance(v, (str, int, float)) and k not in ("detail", "retry_after")})


def _death(code: int | None, pid: int) -> ImgproxyError:
    if code is not None and code < 0 and -code in _CRASH_SIGNALS:
        log.warning("render worker %d crashed (%s) on its input", pid, _describe(code))
        return Undecodable("the original crashed its render worker", signal=_describe(code))
    if code == -signal.SIGXCPU:
        return Undecodable("rendering the original used more CPU than a worker may",
                           limit="worker_cpu_seconds")
    log.warning("render worker %d died (%s); answering 503", pid, _describe(code))
    return Unavailable("the render worker died; try again", retry_after=1)


async def _exit_code(worker: _Worker) -> int | None:
    try:
        return await asyncio.wait_for(asyncio.shield(worker.proc.wait()), 5)
    except asyncio.TimeoutError:
        return None


def _describe(code: int | None) -> str:
    if code is None:
        return "unknown exit"
    if code < 0:
        try:
            return signal.Signals(-code).name
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def _json(raw: bytes) -> dict[str, Any]:
    import json

    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("worker meta is not an object")
    return value


def _worker_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items()
            if name in _ENV_NAMES or name.startswith(_ENV_PREFIXES)}


def _spool_dir() -> str:
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="imgproxy-src-", dir=base)


def _write_all(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as f:
        f.write(data)
