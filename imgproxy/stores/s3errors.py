"""botocore and aiohttp errors, mapped to ours where they enter::

    botocore / aiohttp                      ImgproxyError
    ├── NoSuchKey, 404                      NotFound            404
    ├── AccessDenied, bad credentials,      Unavailable         503, logged as critical
    │   NoSuchBucket (a misconfiguration)
    ├── connect timeout, unreachable,       Unavailable         503 + Retry-After
    │   5xx or throttling after retries,
    │   or past the call's deadline
    └── read timeout of an original         GatewayTimeout      504

A lost conditional write (412, or 409 while another one is in flight) is
not an error: callers catch ``ClientError`` with :func:`lost_race` first.

botocore's timeouts bound each attempt, not a call: attempts, the backoff
between them and a response that trickles in can add up to far more than
``s3_timeout × s3_max_attempts``. The variant store and its leases pass that
product to :func:`mapped` as one deadline for the whole call.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import aiohttp
import anyio
from botocore.exceptions import BotoCoreError, ClientError, ReadTimeoutError

from ..errors import GatewayTimeout, NotFound, Unavailable
from ..metrics import STORE_ERRORS

log = logging.getLogger("imgproxy.stores")

_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
_DENIED = frozenset({
    "AccessDenied", "403", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "AllAccessDisabled", "NoSuchBucket", "InvalidBucketName",
})
_CONFLICT = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def lost_race(exc: ClientError) -> bool:
    """A conditional write (``If-None-Match``/``If-Match``) that another writer won."""
    return error_code(exc) in _CONFLICT


@contextmanager
def mapped(what: str, *, origin: bool = False, deadline: float | None = None) -> Iterator[None]:
    """Map botocore/aiohttp errors raised inside to :mod:`imgproxy.errors`.

    ``deadline``: seconds the whole call may take, retries included.
    """
    try:
        with anyio.fail_after(deadline) if deadline is not None else nullcontext():
            yield
    except ClientError as exc:
        code = error_code(exc)
        if code in _MISSING:
            raise NotFound("no such original" if origin else "no such object") from exc
        STORE_ERRORS.labels(what).inc()
        if code in _DENIED:
            log.critical("S3 refused %s (%s): check the bucket, credentials and policy: %s", what, code, exc)
            raise Unavailable("storage is misconfigured") from exc
        log.error("S3 %s failed: %s", what, exc)
        raise Unavailable("storage is unavailable", retry_after=2) from exc
    except ReadTimeoutError as exc:
        STORE_ERRORS.labels(what).inc()
        log.error("S3 %s timed out: %s", what, exc)
        if origin:
            raise GatewayTimeout("the originals store did not answer in time") from exc
        raise Unavailable("storage is unavailable", retry_after=2) from exc
    except (TimeoutError, BotoCoreError, aiohttp.ClientError) as exc:
        STORE_ERRORS.labels(what).inc()
        log.error("S3 %s failed: %s", what, str(exc) or f"{type(exc).__name__} (deadline {deadline}s)")
        raise Unavailable("storage is unavailable", retry_after=2) from exc
