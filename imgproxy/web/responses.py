"""Response headers and bodies: the one place that speaks HTTP for variants and errors."""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Sequence

from starlette.types import Receive, Scope, Send

from ..caching import IMMUTABLE, for_error
from ..cdn import surrogate_key
from ..errors import ImgproxyError, MethodNotAllowed
from ..stores import Blob
from ..variants.service import Timings
from .cors import NO_CORS, Cors, vary_header

__all__ = ["Receive", "Scope", "Send", "VariantHeaders", "error_headers", "not_modified_headers", "send_error",
           "send_redirect", "server_timing"]

Headers = list[tuple[bytes, bytes]]

_IMMUTABLE = IMMUTABLE.encode()
#: Headers a 304 repeats from the 200 it stands for (RFC 9110 15.4.5).
_NOT_MODIFIED = frozenset({b"etag", b"cache-control", b"last-modified", b"vary", b"access-control-allow-origin"})


class VariantHeaders:
    """The headers of a 200 for a variant, built once per stored variant.

    Keyed by variant key and checked against the ETag, so a blob read again
    from the store reuses them; cleared whole when full (cheaper than an LRU
    on the hit path). The original's surrogate key (:mod:`imgproxy.cdn`) is
    built in with the rest, so a hit pays nothing for it.
    """

    def __init__(self, size: int = 65536, vary: bool = False, cors: Cors = NO_CORS, surrogate: str = "") -> None:
        self.size = size
        self.vary = vary  # for ``.auto``: the response depends on Accept
        self._surrogate = surrogate.lower().encode()  # the header's name; empty sends none
        # What CORS adds to every response, whatever the request's Origin (the echo is the caller's).
        self._fixed = (*cors.fixed, *(((b"vary", value),) if (value := vary_header(vary, cors)) else ()))
        self._built: dict[str, tuple[str, tuple[tuple[bytes, bytes], ...]]] = {}

    def surrogate(self, id: str) -> tuple[tuple[bytes, bytes], ...]:
        """The surrogate-key header of original ``id``, or none when the setting is empty."""
        return ((self._surrogate, surrogate_key(id).encode()),) if self._surrogate else ()

    def get(self, key: str, blob: Blob, content_type: str, id: str) -> tuple[tuple[bytes, bytes], ...]:
        """The headers of ``blob``, stored under ``key``, a variant (or metadata document) of original ``id``."""
        built = self._built.get(key)
        if built is not None and built[0] == blob.etag:
            return built[1]
        headers = (
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(blob.body)).encode()),
            (b"cache-control", _IMMUTABLE),
            (b"etag", blob.etag.encode()),
            # Never after Date (RFC 9110 8.8.2.1), even for a store whose clock runs ahead.
            (b"last-modified", email.utils.formatdate(min(blob.mtime, time.time()), usegmt=True).encode()),
            (b"x-content-type-options", b"nosniff"),
            *self.surrogate(id),
            *self._fixed,
        )
        if len(self._built) >= self.size:
            self._built.clear()
        self._built[key] = (blob.etag, headers)
        return headers


def not_modified_headers(headers: Sequence[tuple[bytes, bytes]]) -> Headers:
    return [h for h in headers if h[0] in _NOT_MODIFIED]


def error_headers(exc: ImgproxyError, length: int, max_age: int | None = None,
                  extra: Sequence[tuple[bytes, bytes]] = ()) -> Headers:
    """``max_age``, when given, replaces the error class's own (the 404 TTL setting); ``extra`` is appended."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(length).encode()),
        (b"cache-control", for_error(exc.max_age if max_age is None else max_age).encode()),
    ]
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    if isinstance(exc, MethodNotAllowed):
        headers.append((b"allow", b"GET, HEAD"))
    headers.extend(extra)
    return headers


async def send_error(send: Send, exc: ImgproxyError, head: bool = False, max_age: int | None = None,
                     extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(exc.body()).encode()
    await send({"type": "http.response.start", "status": exc.status,
                "headers": error_headers(exc, len(body), max_age, extra)})
    await send({"type": "http.response.body", "body": b"" if head else body})


#: How long a redirect to a canonical URL may be kept: that URL never changes.
REDIRECT_MAX_AGE = 86400


async def send_redirect(send: Send, location: bytes, extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """A cacheable 308 to ``location`` (the canonical URL of a variant); ``extra`` is appended."""
    headers = [(b"location", location), (b"content-length", b"0"),
               (b"cache-control", f"public, max-age={REDIRECT_MAX_AGE}".encode()), *extra]
    await send({"type": "http.response.start", "status": 308, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


def server_timing(timings: Timings) -> tuple[bytes, bytes]:
    """``Server-Timing`` of a render: lease, fetch, queue, render, store (ms)."""
    names = ("lease", "fetch", "queue", "render", "store")
    parts = (f"{name};dur={getattr(timings, name) * 1000:.1f}" for name in names)
    return b"server-timing", ", ".join(parts).encode()
