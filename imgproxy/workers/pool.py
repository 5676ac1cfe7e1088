"""The machine's render pool: one :class:`ProcessRenderer` that every server
process of ``serve --workers N`` (process mode) submits to, so a keep-alive
connection pinned to one server process can use every worker.

``serve`` starts it before uvicorn forks (:class:`PoolKeeper`) as
``python -m imgproxy.workers.pool <folder> <concurrency> <queue> <memory_mb>
<cpu_seconds> <vips_concurrency>``, with the workers' clean environment. The
folder is private (0700) and holds ``sock``, where the pool listens, and
``status``, a page of counters the server processes read without a round trip
(``workers``, ``idle``, ``pids``). Its path reaches the server processes in
``IMGPROXY_RENDER_POOL`` (internal, set by ``serve``); their renderer is then
:class:`imgproxy.workers.remote.RemoteRenderer`.

One connection per job, frames as :mod:`.codec`'s::

    server -> pool   !Q length, pickle of a job (:func:`.codec.encode_job`), relayed to a worker unread
    pool -> server   {"started": pid}                      a worker took it
                     {"reply": <worker meta>, "pid": pid}  + the worker's body, relayed
                     {"died": exit code, "pid": pid}       the worker died mid-job
                     {"refused": detail}                   instead of "started": the queue is full

The worker's meta travels nested, so a compromised worker cannot forge the
pool's own frames. A server that closes its connection (deadline, cancelled
request, its own death) stops its job: dropped if queued, its worker killed if
rendering. The pool holds ``concurrency`` jobs running and ``queue`` waiting
for the whole machine; each server process also admits no more than that
before it fetches an original.

The keeper restarts a pool that dies (server processes answer 503 meanwhile)
and closes it after uvicorn has drained the server processes: the pool exits
when the pipe on its stdin closes, and ignores SIGINT and SIGTERM, which a
terminal or ``kill`` of the process group sends to every process at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

from ..stores.spool import memory_folder
from .base import restart_delay
from .codec import JOB_HEADER, MAX_JOB, encode_reply
from .processes import ProcessRenderer, WorkerDied, worker_env

log = logging.getLogger("imgproxy.workers")

#: Set by ``serve`` for its server processes: the pool's folder.
POOL_ENV = "IMGPROXY_RENDER_POOL"
SOCKET, STATUS = "sock", "status"
#: status: workers alive, idle, pids listed, then the pids.
_STATUS_HEAD = struct.Struct("=III")
STATUS_SIZE = 4096
_MAX_PIDS = (STATUS_SIZE - _STATUS_HEAD.size) // 4
_STATUS_EVERY = 0.05
_START_TIMEOUT = 60.0


def read_status(view: mmap.mmap | bytes) -> tuple[int, int, list[int]]:
    """(workers, idle, pids) as the pool last wrote them."""
    workers, idle, count = _STATUS_HEAD.unpack_from(view, 0)
    count = min(count, _MAX_PIDS)
    return workers, idle, list(struct.unpack_from(f"={count}I", view, _STATUS_HEAD.size))


def _write_status(view: mmap.mmap, workers: int, idle: int, pids: Sequence[int]) -> None:
    pids = list(pids)[:_MAX_PIDS]
    _STATUS_HEAD.pack_into(view, 0, workers, idle, len(pids))
    struct.pack_into(f"={len(pids)}I", view, _STATUS_HEAD.size, *pids)


def _open_status(folder: Path) -> mmap.mmap:
    """The status page, made in place (server processes keep it mapped across restarts)."""
    fd = os.open(folder / STATUS, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, STATUS_SIZE)
        return mmap.mmap(fd, STATUS_SIZE)
    finally:
        os.close(fd)


class Pool:
    """The pool process's server: jobs in over the socket, run on ``renderer``."""

    def __init__(self, renderer: ProcessRenderer, queue: int, status: mmap.mmap) -> None:
        self.renderer = renderer
        self.capacity = renderer.concurrency + queue
        self.jobs = 0
        self._status = status

    def publish(self) -> None:
        """The status page, now (also on a timer, for workers replaced in the background)."""
        r = self.renderer
        _write_status(self._status, r.workers, r.idle, r.pids)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            size = JOB_HEADER.unpack(await reader.readexactly(JOB_HEADER.size))[0]
            if size > MAX_JOB:
                return
            payload = await reader.readexactly(size)
            if self.jobs >= self.capacity:
                writer.writelines(encode_reply({"refused": "render queue is full"}))
                await writer.drain()
                return
            self.jobs += 1
            try:
                # Relayed as it came: the pool does not need to read the job.
                await self._until_hangup(reader, self._run(JOB_HEADER.pack(size) + payload, writer))
            finally:
                self.jobs -= 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the server went away before its job was in
        finally:
            writer.close()

    @staticmethod
    async def _until_hangup(reader: asyncio.StreamReader, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` unless the server closes first (it sends nothing more): then cancel it."""
        job = asyncio.ensure_future(work)
        hangup = asyncio.ensure_future(reader.read(1))
        try:
            await asyncio.wait({job, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            hangup.cancel()
            if not job.done():
                job.cancel()  # dropped from the queue, or its worker killed
            with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                await job

    async def _run(self, frame: bytes, writer: asyncio.StreamWriter) -> None:
        worker = await self.renderer.checkout()
        self.publish()
        writer.writelines(encode_reply({"started": worker.pid}))
        try:
            meta, body = await self.renderer.exchange(worker, frame)
        except WorkerDied as died:
            writer.writelines(encode_reply({"died": died.code, "pid": died.pid}))
        else:
            writer.writelines(encode_reply({"reply": meta, "pid": worker.pid}, body))
        finally:
            self.publish()
        await writer.drain()


async def _serve(folder: Path, renderer: ProcessRenderer, queue: int) -> None:
    try:
        await renderer.start()  # raises when workers cannot start: exit, the keeper retries
    except BaseException:
        await renderer.aclose()
        raise
    status = _open_status(folder)
    pool = Pool(renderer, queue, status)
    path = folder / SOCKET
    path.unlink(missing_ok=True)
    server = await asyncio.start_unix_server(pool.handle, path, limit=1 << 20)
    closed = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_stdin() -> None:
        if not os.read(0, 1):  # the keeper closed its pipe: stop
            closed.set()

    loop.add_reader(0, on_stdin)
    try:
        while not closed.is_set():
            pool.publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(closed.wait(), _STATUS_EVERY)
    finally:
        # 1. stop accepting (the server processes have drained); 2. close the workers.
        loop.remove_reader(0)
        server.close()
        path.unlink(missing_ok=True)
        _write_status(status, 0, 0, [])
        await renderer.aclose()


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    for name in (signal.SIGINT, signal.SIGTERM):
        signal.signal(name, signal.SIG_IGN)  # the keeper decides when the pool ends
    folder = Path(argv[0])
    concurrency, queue, memory_mb, cpu_seconds, vips = (int(a) for a in argv[1:])
    # No deadline here: each server process keeps its own and hangs up when it passes.
    renderer = ProcessRenderer(concurrency, queue, 0, memory_mb, cpu_seconds, vips)
    try:
        asyncio.run(_serve(folder, renderer, queue))
    except RuntimeError as exc:
        print(f"imgproxy render pool: {exc}", file=sys.stderr)
        return 3
    return 0


class PoolKeeper:
    """The pool process, seen from ``serve``: started before uvicorn forks,
    restarted when it dies, closed when uvicorn returns."""

    def __init__(self, concurrency: int, queue: int, memory_mb: int, cpu_seconds: int,
                 vips_concurrency: int) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="imgproxy-pool-", dir=memory_folder()))  # 0700
        self._args = [str(self.folder), *(str(n) for n in (concurrency, queue, memory_mb,
                                                           cpu_seconds, vips_concurrency))]
        self._proc: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="render-pool", daemon=True)

    def __enter__(self) -> PoolKeeper:
        try:
            self._proc = self._spawn()
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise
        self._watcher.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stopping.set()
        self._close()
        self._watcher.join(_START_TIMEOUT)
        self._close()  # one the watcher started meanwhile
        shutil.rmtree(self.folder, ignore_errors=True)

    def _close(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()  # the pool closes its workers and exits
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def _spawn(self) -> subprocess.Popen[bytes]:
        (self.folder / SOCKET).unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "-m", "imgproxy.workers.pool", *self._args],
                                env=worker_env(), stdin=subprocess.PIPE)
        deadline = time.monotonic() + _START_TIMEOUT
        while proc.poll() is None and time.monotonic() < deadline:
            with socket.socket(socket.AF_UNIX) as probe, contextlib.suppress(OSError):
                probe.connect(str(self.folder / SOCKET))
                return proc
            time.sleep(0.05)
        proc.kill()
        raise RuntimeError(f"the render pool did not start (exit {proc.wait()})")

    def _watch(self) -> None:
        """Restart the pool when it dies; requests get 503 until it is back."""
        delay, up_since = 0.0, time.monotonic()
        while True:
            assert self._proc is not None
            code = self._proc.wait()
            if self._stopping.is_set():
                return
            with contextlib.suppress(OSError), _open_status(self.folder) as status:
                _write_status(status, 0, 0, [])
            log.error("the render pool exited (%s); restarting it", code)
            # At once after a long run; backing off when it keeps dying (a crash loop).
            delay = 0.0 if time.monotonic() - up_since > 60 else restart_delay(delay)
            while not self._stopping.wait(delay):
                try:
                    self._proc = self._spawn()
                    up_since = time.monotonic()
                    break
                except (OSError, RuntimeError) as exc:
                    delay = restart_delay(delay)
                    log.error("%s; retrying in %.1fs", exc, delay)
            else:
                return


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
