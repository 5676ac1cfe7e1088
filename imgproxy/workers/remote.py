"""A server process's end of the machine's render pool (:mod:`.pool`).

Same interface and outcomes as :class:`ProcessRenderer`: ``admit()`` bounds
this process's renders before it fetches originals, a worker's reply is decoded here
(:func:`decode_result`, :meth:`WorkerDied.error`), and ``render_timeout``
runs here, so ``started`` tells a slow render (the input's cost) from a long
wait (load). A pool that cannot be reached, or dies mid-job, is a 503.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from ..errors import Unavailable
from ..render import Job, Result
from .base import RendererBase
from .codec import MAX_META, decode_result, encode_job, read_reply
from .pool import SOCKET, STATUS, STATUS_SIZE, read_status
from .processes import WorkerDied

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

        frame = encode_job(job)
        try:
            with anyio.fail_after(self.deadline(job)):
                meta, body, pid = await self._submit(frame, begin)
        except TimeoutError:
            raise self.too_slow(job, rendering=bool(rendering)) from None
        return _outcome(meta, body, pid)

    async def _submit(self, frame: bytes, begin: Callable[[], None]) -> tuple[dict[str, Any], bytes, int]:
        """The pool's reply to the job in ``frame``; 503 when it is full, unreachable or dies."""
        try:
            reader, writer = await asyncio.open_unix_connection(self._socket, limit=1 << 20)
            try:  # closing the connection, on any way out, stops the job in the pool
                writer.write(frame)
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
        if self._status is not None:
            self._status.close()


def _outcome(meta: dict[str, Any], body: bytes, pid: int) -> Result:
    if "died" in meta:
        code = meta["died"]
        raise WorkerDied(code if isinstance(code, int) else None, pid).error()
    return decode_result(meta["reply"], body, pid)
