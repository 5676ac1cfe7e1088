"""The skeleton of the plain-ASGI endpoints (``/v/``, ``/meta/``, ``/o/`` and
uploads): what every one of them does, done the same way in one place::

    1. method                                      405 (JSON, with Allow)
    2. the path under the endpoint's prefix, ASCII 400
    3. the signature over a canonical string       403
    4. an ImgproxyError -> its JSON error response;
       any other exception -> logged as a bug, 500 "internal"
    5. every error counted once: here in imgproxy_requests_total{outcome=<category>},
       and noted on the request's record, from which RequestLog counts
       imgproxy_errors_total{category} and writes the access line's error
    6. If-None-Match                               304
    7. CORS (IMGPROXY_CORS_ORIGINS) on errors too: a page must read a 404's JSON

An endpoint subclasses :class:`Endpoint`, sets ``prefix`` (and ``methods``
when not GET and HEAD) and writes ``serve``: only what is its own. The variant
endpoint writes ``__call__`` itself, the same shape inlined, to spare its hit
path a coroutine.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import ClassVar

from ..errors import BadRequest, Forbidden, ImgproxyError, MethodNotAllowed, NotFound, Unavailable
from ..metrics import REQUESTS
from ..signing import verify
from .cors import NO_CORS, Cors
from .logs import note_error
from .responses import Receive, Scope, Send, not_modified_headers, send_error

log = logging.getLogger("imgproxy")

GET_HEAD = frozenset({"GET", "HEAD"})


class Endpoint:
    #: The path's prefix, up to where the endpoint's own part starts (``b"/v/"``).
    prefix: ClassVar[bytes] = b"/"
    methods: ClassVar[frozenset[str]] = GET_HEAD
    #: The detail of the 405.
    method_detail: ClassVar[str] = "only GET and HEAD are allowed"
    #: Signing keys, newest first.
    keys: tuple[str, ...] = ()
    #: max-age of a 404, in place of the error's own; None keeps the error's.
    not_found_max_age: int | None = None
    cors: Cors = NO_CORS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            self.check_method(scope["method"])
            await self.serve(scope, receive, send)
        except Exception as exc:
            await self.fail(scope, send, exc)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The endpoint's own work, once the method is allowed; raises ImgproxyError to answer with it."""
        raise NotImplementedError

    def check_method(self, method: str) -> None:
        if method not in self.methods:
            raise MethodNotAllowed(self.method_detail)

    def path(self, raw: bytes) -> str:
        """The raw path after the prefix, which must be ASCII (percent-escapes left as they are)."""
        try:
            return raw[len(self.prefix):].decode("ascii")
        except UnicodeDecodeError:
            raise BadRequest("the path must be ASCII") from None

    def check_signature(self, canonical: str, signature: str) -> None:
        if not verify(self.keys, canonical, signature):
            raise Forbidden("bad signature")

    async def fail(self, scope: Scope, send: Send, exc: Exception) -> None:
        max_age = self.not_found_max_age if isinstance(exc, NotFound) else None
        extra = [*self.error_headers(exc)] if isinstance(exc, ImgproxyError) else []
        if self.cors.on:
            extra += self.cors.headers(scope)
        await answer_error(scope, send, exc, max_age, extra)

    def error_headers(self, exc: ImgproxyError) -> Sequence[tuple[bytes, bytes]]:
        """Headers an error response carries beyond the usual ones (a 416's Content-Range)."""
        return ()


async def answer_error(scope: Scope, send: Send, exc: Exception, max_age: int | None = None,
                       extra: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Answer ``exc`` with its JSON error, counted once; a bug is logged and answered 500 "internal"."""
    if not isinstance(exc, ImgproxyError):
        log.error("unhandled error (category: bug) for %s %s", scope["method"], scope.get("path"), exc_info=exc)
        exc = ImgproxyError("internal error")
    REQUESTS.labels(exc.error).inc()
    note_error(scope, exc.error)
    await send_error(send, exc, head=scope["method"] == "HEAD", max_age=max_age, extra=extra)


async def starting(scope: Scope, receive: Receive, send: Send) -> None:
    """Every endpoint's answer before the lifespan has built it, and once shutdown has begun."""
    await answer_error(scope, send, Unavailable("server is starting", retry_after=1))


def raw_path(scope: Scope) -> bytes:
    raw: bytes | None = scope.get("raw_path")
    return raw or scope["path"].encode()


def not_modified(scope: Scope, etag: str) -> bool:
    """Whether the request's If-None-Match names ``etag`` (weak or strong) or ``*``."""
    for name, value in scope["headers"]:
        if name == b"if-none-match":
            tags = [t.strip().removeprefix("W/") for t in value.decode("latin-1").split(",")]
            return "*" in tags or etag in tags
    return False


async def send_not_modified(send: Send, headers: Sequence[tuple[bytes, bytes]]) -> None:
    """The 304 standing for a 200 with ``headers``."""
    await send({"type": "http.response.start", "status": 304, "headers": not_modified_headers(headers)})
    await send({"type": "http.response.body", "body": b""})
