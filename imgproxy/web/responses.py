"""Response headers and bodies: the one place that speaks HTTP for variants and errors."""

from __future__ import annotations

import email.utils
import json

from starlette.types import Receive, Scope, Send

from ..caching import IMMUTABLE, for_error
from ..errors import ImgproxyError, MethodNotAllowed
from ..stores import Blob

__all__ = ["Receive", "Scope", "Send", "VariantHeaders", "error_headers", "not_modified_headers", "send_error"]

Headers = list[tuple[bytes, bytes]]

_IMMUTABLE = IMMUTABLE.encode()
#: Headers a 304 repeats from the 200 it stands for (RFC 9110 15.4.5).
_NOT_MODIFIED = frozenset({b"etag", b"cache-control", b"last-modified", b"vary"})


class VariantHeaders:
    """The headers of a 200 for a variant, built once per stored variant.

    Keyed by variant key and checked against the ETag, so a blob read again
    from the store reuses them; cleared whole when full (cheaper than an LRU
    on the hit path).
    """

    def __init__(self, size: int = 65536) -> None:
        self.size = size
        self._built: dict[str, tuple[str, tuple[tuple[bytes, bytes], ...]]] = {}

    def get(self, key: str, blob: Blob, content_type: str) -> tuple[tuple[bytes, bytes], ...]:
        built = self._built.get(key)
        if built is not None and built[0] == blob.etag:
            return built[1]
        headers = (
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(blob.body)).encode()),
            (b"cache-control", _IMMUTABLE),
            (b"etag", blob.etag.encode()),
            (b"last-modified", email.utils.formatdate(blob.mtime, usegmt=True).encode()),
            (b"x-content-type-options", b"nosniff"),
        )
        if len(self._built) >= self.size:
            self._built.clear()
        self._built[key] = (blob.etag, headers)
        return headers


def not_modified_headers(headers: tuple[tuple[bytes, bytes], ...]) -> Headers:
    return [h for h in headers if h[0] in _NOT_MODIFIED]


def error_headers(exc: ImgproxyError, length: int, max_age: int | None = None) -> Headers:
    """``max_age``, when given, replaces the error class's own (the 404 TTL setting)."""
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(length).encode()),
        (b"cache-control", for_error(exc.max_age if max_age is None else max_age).encode()),
    ]
    if exc.retry_after is not None:
        headers.append((b"retry-after", str(exc.retry_after).encode()))
    if isinstance(exc, MethodNotAllowed):
        headers.append((b"allow", b"GET, HEAD"))
    return headers


async def send_error(send: Send, exc: ImgproxyError, head: bool = False, max_age: int | None = None) -> None:
    body = json.dumps(exc.body()).encode()
    await send({"type": "http.response.start", "status": exc.status,
                "headers": error_headers(exc, len(body), max_age)})
    await send({"type": "http.response.body", "body": b"" if head else body})
