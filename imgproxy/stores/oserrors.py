"""OSError from writes into folders this server owns, mapped once where they are written::

    OSError                          ImgproxyError
    ├── ENOSPC, EDQUOT   full        an upload (storing): InsufficientStorage 507
    │                                else (a miss):       Unavailable 503 + Retry-After
    ├── EROFS, EACCES,   unwritable  Unavailable 503 + Retry-After
    │   EPERM
    └── anything else                raised as it is (a bug, or the id's shape: stores/local.py)

The folders are the spool (:mod:`.spool`), where fetched originals and uploads
wait, and a local originals store (:mod:`.local`). A full or read-only folder
is the operator's to fix, never the request's fault, so it is never a 500.
A miss asked to store nothing, so a full spool is a passing 503 for it; an
upload asked to store its bytes, which is what 507 says. Each refusal is
logged and counted in ``imgproxy_disk_errors_total{folder, reason}``.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from ..errors import ImgproxyError, InsufficientStorage, Unavailable

log = logging.getLogger("imgproxy.stores")

_REASONS = {
    errno.ENOSPC: "full", errno.EDQUOT: "full",
    errno.EROFS: "unwritable", errno.EACCES: "unwritable", errno.EPERM: "unwritable",
}


def refused(exc: OSError, folder: str, storing: bool = False) -> ImgproxyError | None:
    """The error a write refused by a full or unwritable ``folder`` answers with;
    None for any other OSError. ``storing``: the request uploads bytes to keep."""
    reason = _REASONS.get(exc.errno or 0)
    if reason is None:
        return None
    # Imported here: stores/__init__ imports this module, and ``serve`` imports
    # the stores before it sets PROMETHEUS_MULTIPROC_DIR (metrics.py).
    from ..metrics import DISK_ERRORS

    DISK_ERRORS.labels(folder, reason).inc()
    log.error("%s folder refused a write (%s)", folder, exc.strerror or exc)
    if reason == "full" and storing:
        return InsufficientStorage(f"the {folder} folder is full", reason=reason)
    return Unavailable(f"the {folder} folder is {reason}; try again", retry_after=1, reason=reason)


@contextmanager
def writing(folder: str, storing: bool = False) -> Iterator[None]:
    """Map a full or unwritable ``folder``'s OSError raised inside (see :func:`refused`)."""
    try:
        yield
    except OSError as exc:
        mapped = refused(exc, folder, storing)
        if mapped is None:
            raise
        raise mapped from exc
