"""Originals fetched from a network store or uploaded, held as files while they wait.

    origin / S3 / upload chunks ──write──> <spool folder>/orig-XXXX   one chunk in memory at a time
                                             └─> Source(path=...) for the worker; removed after the render
                                                 (an upload's after it is stored)

A fetched original is never joined into one ``bytes`` (let alone chunks *and* a
joined copy): each chunk is written as it arrives, and the worker opens the file.
The spool folder is ``/dev/shm`` (memory, but not the server's heap) when it is
writable and at least as large as the byte budget, else the temp folder;
``IMGPROXY_SPOOL_DIR`` picks another (a disk). Docker gives containers a 64 MiB
``/dev/shm``, which a 1 GiB budget would overflow, so there the temp folder is
used; whichever folder is chosen, one smaller than the budget is named in a
warning at start-up. A folder that fills up anyway, or cannot be written, is a
503 with ``Retry-After`` (an upload's full folder 507: :mod:`.oserrors`), never a 500.

A byte budget (``originals_budget_mb``) bounds what the originals in flight hold
at once, downloading, uploading or waiting for a worker: past it a fetch or an upload is refused with
503 and ``Retry-After`` at once when the ``Content-Length`` already says so,
else as soon as its bytes pass it. A miss pile-up then costs the budget, not
the number of misses times the size of an original.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterable

from ..errors import TooLarge, Unavailable
from .oserrors import writing

log = logging.getLogger("imgproxy.stores")
_SHM = "/dev/shm"


class Spool:
    def __init__(self, budget: int, directory: str = "") -> None:
        self.budget = budget
        self.held = 0  # bytes reserved by the originals in flight
        self.parent = _folder(directory, budget)
        self._dir: str | None = None  # made on the first original

    async def receive(self, chunks: AsyncIterable[bytes], limit: int, declared: int | None = None, *,
                      storing: bool = False) -> Spooled:
        """``chunks`` written to a spool file; 413 past ``limit`` bytes, 503 past the budget;
        a full folder 503, or 507 when ``storing`` (an upload: :mod:`.oserrors`)."""
        fd, path = self._mkstemp(storing)
        spooled = Spooled(path, self)
        try:
            if declared is not None:
                spooled.reserve(min(declared, limit))
            async for chunk in chunks:
                size = spooled.size + len(chunk)
                if size > limit:
                    raise TooLarge(f"the original is over the limit of {limit} bytes", limit="max_source_bytes")
                spooled.reserve(size)
                with writing("spool", storing):
                    _write_all(fd, chunk)  # a page-cache (or tmpfs) copy: it does not wait on the disk
                spooled.size = size
        except BaseException:
            spooled.close()
            raise
        finally:
            os.close(fd)
        return spooled

    def _mkstemp(self, storing: bool) -> tuple[int, str]:
        with writing("spool", storing):
            if self._dir is None:
                self._dir = tempfile.mkdtemp(prefix="imgproxy-originals-", dir=self.parent)
            return tempfile.mkstemp(dir=self._dir, prefix="orig-")

    def close(self) -> None:
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


def memory_folder(need: int = 0) -> str:
    """``/dev/shm`` when it is writable and holds ``need`` bytes, else the temp folder:
    the one place that picks where the server's transient files go (this spool, the
    render pool's private folder)."""
    shm = _size(_SHM) if os.access(_SHM, os.W_OK) else None
    return _SHM if shm is not None and shm >= need else tempfile.gettempdir()


def _folder(directory: str, budget: int) -> str:
    """``directory``, else :func:`memory_folder` for the budget; a folder smaller than
    the budget is named in a warning (this runs at start-up)."""
    folder = directory or memory_folder(budget)
    size = _size(folder)
    if size is not None and size < budget:
        log.warning("spool folder %s holds %d MiB, less than IMGPROXY_ORIGINALS_BUDGET_MB (%d MiB): "
                    "misses get 503 when it fills; set IMGPROXY_SPOOL_DIR to a larger folder",
                    folder, size >> 20, budget >> 20)
    return folder


def _size(folder: str) -> int | None:
    """The size of the filesystem ``folder`` is on, in bytes; None if it cannot be read."""
    try:
        st = os.statvfs(folder)
    except OSError:
        return None
    return st.f_blocks * st.f_frsize


class Spooled:
    """One original's spool file and its share of the budget; ``close()`` gives both back."""

    def __init__(self, path: str, spool: Spool) -> None:
        self.path = path
        self.size = 0
        self._spool = spool
        self._reserved = 0

    def reserve(self, size: int) -> None:
        """Hold ``size`` bytes of the budget in all (never less than before)."""
        more = size - self._reserved
        if more <= 0:
            return
        if self._spool.held + more > self._spool.budget:
            raise Unavailable("too many original bytes in flight; try again", retry_after=1,
                              limit="originals_budget_mb")
        self._spool.held += more
        self._reserved += more

    def close(self) -> None:
        self._spool.held -= self._reserved
        self._reserved = 0
        with contextlib.suppress(OSError):
            os.unlink(self.path)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
