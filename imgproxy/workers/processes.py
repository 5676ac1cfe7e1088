"""Rendering in capped worker processes (see the package docstring for the
outcomes table); :mod:`.child` is the other end of the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any

import anyio

from ..errors import ImgproxyError, Unavailable, Undecodable
from ..render import Job, Result
from .base import RendererBase, restart_delay
from .codec import decode_result, encode_job, read_reply

log = logging.getLogger("imgproxy.workers")

#: Signals with which a decoder dies on bad input (or a failed allocation).
_CRASH_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGBUS, signal.SIGILL, signal.SIGFPE,
                            signal.SIGABRT})
#: The worker's environment: enough to run Python and libvips, no secrets.
_ENV_NAMES = ("PATH", "LANG", "TZ", "TMPDIR", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")
_ENV_PREFIXES = ("LC_", "VIPS_", "G_")
_START_TIMEOUT = 30.0


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

    async def send(self, frame: bytes) -> None:
        self.writer.write(frame)
        await self.writer.drain()

    async def receive(self) -> tuple[dict[str, Any], bytes]:
        return await read_reply(self.reader)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()

    async def close(self) -> int:
        """Close the socket (an idle worker exits on EOF), reap, return the exit code."""
        self.writer.close()
        try:
            return await asyncio.wait_for(self.proc.wait(), 5)
        except TimeoutError:
            self.kill()
            return await self.proc.wait()


class WorkerDied(Exception):
    """A worker's socket broke mid-job; ``error()`` is what the request gets."""

    def __init__(self, code: int | None, pid: int) -> None:
        super().__init__(code, pid)
        self.code = code
        self.pid = pid

    def error(self) -> ImgproxyError:
        return _death(self.code, self.pid)


class ProcessRenderer(RendererBase):
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

    @property
    def workers(self) -> int:
        return sum(1 for w in self._all if w.alive)

    @property
    def idle(self) -> int:
        return self._idle.qsize()

    @property
    def pids(self) -> list[int]:
        return sorted(w.pid for w in self._all if w.alive)

    async def start(self) -> None:
        workers = await asyncio.gather(*(self._spawn() for _ in range(self.concurrency)))
        for worker in workers:
            self._idle.put_nowait(worker)

    async def run(self, job: Job, started: Callable[[], object] | None = None) -> Result:
        frame = encode_job(job)
        worker: _Worker | None = None
        try:
            with anyio.fail_after(self.deadline(job)):
                worker = await self.checkout()
                if started is not None:
                    started()
                return await self._run(worker, frame)
        except TimeoutError:
            raise self.too_slow(job, rendering=worker is not None) from None

    async def checkout(self) -> _Worker:
        """An idle, live worker; the caller hands it to :meth:`exchange` next."""
        while True:
            worker = await self._idle.get()
            if worker.alive:
                return worker
            self._replace(worker)  # died while idle: not this request's problem

    async def _run(self, worker: _Worker, frame: bytes) -> Result:
        try:
            meta, body = await self.exchange(worker, frame)
        except WorkerDied as died:
            raise died.error() from None
        return decode_result(meta, body, worker.pid)

    async def exchange(self, worker: _Worker, frame: bytes) -> tuple[dict[str, Any], bytes]:
        """Run the job in ``frame`` (:func:`encode_job`) on a checked-out ``worker``; its reply
        frame, undecoded. The worker goes back idle or is replaced; cancelling
        kills it. Raises :class:`WorkerDied`."""
        try:
            await worker.send(frame)
            meta, body = await worker.receive()
        except asyncio.CancelledError:  # the deadline (or shutdown): stop the render
            worker.kill()
            self._replace(worker)
            raise
        except (asyncio.IncompleteReadError, ConnectionError, OSError, ValueError):
            self._replace(worker)
            raise WorkerDied(await _exit_code(worker), worker.pid) from None
        if meta.get("exit"):
            self._replace(worker)
        else:
            self._idle.put_nowait(worker)
        return meta, body

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
                delay = restart_delay(delay)
                log.error("cannot start a render worker (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _spawn(self) -> _Worker:
        parent, child = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "imgproxy.workers.child", str(child.fileno()), *self._args,
                pass_fds=(child.fileno(),), env=worker_env(), stdin=asyncio.subprocess.DEVNULL,
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
    except TimeoutError:
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


def worker_env() -> dict[str, str]:
    return {name: value for name, value in os.environ.items()
            if name in _ENV_NAMES or name.startswith(_ENV_PREFIXES)}

