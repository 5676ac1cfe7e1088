"""A server process's end of the machine's render pool (:mod:`.pool`).

Same interface and outcomes as :class:`ProcessRenderer`: ``admit()`` bounds
this process's renders before it fetches originals, fetched bytes are staged
in shared memory here (:class:`Staging`), a worker's reply is decoded here
(:func:`decode_result`, :meth:`WorkerDied.error`), and ``render_timeout``
runs here, so ``started`` tells a slow render (the input's cost) from a long
wait (load). A pool that cannot be reached, or dies mid-job, is a 503.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import pickle
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio

from ..errors import Unavailable
from ..render import Job, Result
from .base import RendererBase
from .codec import JOB_HEADER, MAX_META, decode_result, read_reply
from .pool import SOCKET, STATUS, STATUS_SIZE, read_status
from .processes import Staging, WorkerDied

log = logging.getLogger("imgproxy.workers")


class RemoteRenderer(RendererBase):
    def __init__(self, folder: str, concurrency: int, queue: int, timeout: float) -> None:
        self.concurrency = concurrency
        self.capacity = concurrency + queue
        self.timeout = timeout
        self.pending = 0
        self._socket = str(Path(folder) / SOCKET)
        self._status_path = Path(folder) / STATUS
        self._status: mmap.mmap | None = None
        self._staging = Staging()

    def _counters(self) -> tuple[int, int, list[int]]:
        if self._status is None:
            try:
                fd = os.open(self._status_path, os.O_RDONLY)
            except OSError:
                return 0, 0, []
            try:
                self._status = mmap.mmap(fd, STATUS_SIZE, prot=mmap.PROT_READ)
            except ValueError:  # the pool is making it
                return 0, 0, []
            finally:
                os.close(fd)
        return read_status(self._status)

    @property
    def workers(self) -> int:
        return self._counters()[0]

    @property
    def idle(self) -> int:
        return self._counters()[1]

    @property
    def pids(self) -> list[int]:
        return sorted(self._counters()[2])

    async def run(self, job: Job, started: Callable[[], object] | None = None) -> Result:
        rendering: list[bool] = []

        def begin() -> None:
            rendering.append(True)
            if started is not None:
                started()

        staged: Path | None = None
        try:
            with anyio.fail_after(self.deadline(job)):
                source, staged = await self._staging.stage(job.source)
                meta, body, pid = await self._submit(replace(job, source=source), begin)
        except TimeoutError:
            raise self.too_slow(job, rendering=bool(rendering)) from None
        finally:
            if staged is not None:
                staged.unlink(missing_ok=True)
        return _outcome(meta, body, pid)

    async def _submit(self, job: Job, begin: Callable[[], None]) -> tuple[dict[str, Any], bytes, int]:
        """The pool's reply to ``job``; 503 when it is full, unreachable or dies."""
        try:
            reader, writer = await asyncio.open_unix_connection(self._socket, limit=1 << 20)
            try:  # closing the connection, on any way out, stops the job in the pool
                payload = pickle.dumps(job)
                writer.write(JOB_HEADER.pack(len(payload)) + payload)
                await writer.drain()
                meta, _ = await read_reply(reader)
                if "refused" in meta:
                    raise Unavailable(str(meta["refused"]), retry_after=1)
                pid = int(meta["started"])
                begin()
                meta, body = await read_reply(reader, MAX_META + 256)
                return meta, body, pid
            finally:
                writer.close()
        except (asyncio.IncompleteReadError, OSError, ValueError, KeyError) as exc:
            log.warning("the render pool is unreachable (%r); answering 503", exc)
            raise Unavailable("the render pool is restarting; try again", retry_after=1) from None

    async def aclose(self) -> None:
        self._closed = True
        self._staging.close()
        if self._status is not None:
            self._status.close()


def _outcome(meta: dict[str, Any], body: bytes, pid: int) -> Result:
    if "died" in meta:
        code = meta["died"]
        raise WorkerDied(code if isinstance(code, int) else None, pid).error()
    return decode_result(meta["reply"], body, pid)
