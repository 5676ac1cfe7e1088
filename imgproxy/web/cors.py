"""CORS (``IMGPROXY_CORS_ORIGINS``) for ``/v/``, ``/meta/`` and ``/o/``: which pages
may read our responses from script (``fetch``, a ``<canvas>``, ``crossOrigin``).

    off (empty)   no CORS header at all, as before; OPTIONS is a 405 like any other method
    ``*``         ``Access-Control-Allow-Origin: *`` on every response: one constant
                  header, baked into the cached header tuples (no Vary)
    a list        the request's ``Origin`` echoed when listed, nothing otherwise, and
                  ``Vary: Origin`` on every response, listed origin or not (a cache must
                  not hand one origin's answer to another); the Vary is baked in, the
                  echo is one tuple appended per request

A preflight (``OPTIONS``) is answered 204 with ``GET, HEAD``, the request
headers it asked for (a bounded, token-shaped list) and a max-age; a
disallowed origin gets the 204 without CORS headers, which the browser
refuses. No credentials: variants carry no cookies, and ``*`` forbids them.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from starlette.types import Scope, Send

ALLOW_ORIGIN = b"access-control-allow-origin"
#: How long a browser may keep a preflight's answer (Firefox's cap; Chromium keeps 2 h).
PREFLIGHT_MAX_AGE = 86400
#: The longest Access-Control-Request-Headers echoed; longer ones are left unanswered.
MAX_REQUEST_HEADERS = 512
_HEADER_LIST = re.compile(rb"[A-Za-z0-9!#$%&'*+.^_`|~-]+(?:[ \t]*,[ \t]*[A-Za-z0-9!#$%&'*+.^_`|~-]+)*")

Header = tuple[bytes, bytes]


class Cors:
    def __init__(self, origins: Sequence[str] = ()) -> None:
        self.any = tuple(origins) == ("*",)
        self.listed = frozenset(o.encode() for o in origins) if not self.any else frozenset()
        self.on = bool(origins)
        #: Whether responses depend on Origin (a list): ``Vary: Origin`` on each.
        self.varies = bool(self.listed)
        #: Headers every response carries whatever the request's Origin (cached with the rest).
        self.fixed: tuple[Header, ...] = ((ALLOW_ORIGIN, b"*"),) if self.any else ()

    def echo(self, scope: Scope) -> tuple[Header, ...]:
        """The per-request part: the request's Origin, when listed (a list only)."""
        if not self.listed:
            return ()
        for name, value in scope["headers"]:
            if name == b"origin":
                return ((ALLOW_ORIGIN, value),) if value in self.listed else ()
        return ()

    def headers(self, scope: Scope) -> list[Header]:
        """Everything CORS adds to a response built afresh (an error, a redirect, a download)."""
        vary = [(b"vary", b"Origin")] if self.varies else []
        return [*self.fixed, *self.echo(scope), *vary]

    async def preflight(self, scope: Scope, send: Send) -> None:
        """204 to an OPTIONS: GET and HEAD, for an allowed origin only."""
        headers = [(b"allow", b"GET, HEAD"), (b"content-length", b"0"), *self.headers(scope)]
        allowed = any(name == ALLOW_ORIGIN for name, _ in headers)
        asked = _request_header(scope, b"access-control-request-method")
        if allowed and asked is not None:
            headers += [(b"access-control-allow-methods", b"GET, HEAD"),
                        (b"access-control-max-age", str(PREFLIGHT_MAX_AGE).encode())]
            wanted = _request_header(scope, b"access-control-request-headers")
            if wanted and len(wanted) <= MAX_REQUEST_HEADERS and _HEADER_LIST.fullmatch(wanted.strip()):
                headers.append((b"access-control-allow-headers", wanted.strip()))
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


#: CORS off: every method answers nothing.
NO_CORS = Cors()


def _request_header(scope: Scope, wanted: bytes) -> bytes | None:
    for name, value in scope["headers"]:
        if name == wanted:
            return bytes(value)
    return None


def vary_header(accept: bool, cors: Cors) -> bytes | None:
    """The ``Vary`` of a variant response: Accept for ``.auto``, Origin for a CORS list."""
    names = [name for name, on in ((b"Accept", accept), (b"Origin", cors.varies)) if on]
    return b", ".join(names) or None
