"""The upload endpoint, as a plain ASGI app: ``PUT /o/<id>``.

    PUT /o/<id>[?replace=1][&render=a,b|none][&wait=1]
      Authorization: Bearer <one of IMGPROXY_INGEST_TOKENS>
      1. ingest on (tokens set)                     404
      2. token present / valid                      401 / 403
      3. id, query                                  400
      4. Content-Length over the byte cap           413 (the body is never read)
      5. stream, sniff, probe, store, render        413 / 415 / 422 / 409 (imgproxy.variants.uploads)

The body is read as it arrives; a refusal is answered at once and the
connection closed, so a client sending 200 MB past the cap is cut off
after the first chunks, not after the last.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import AsyncIterator, Sequence
from urllib.parse import parse_qsl

from ..errors import BadRequest, Forbidden, ImgproxyError, NotFound
from ..variants.uploads import Ingest
from .responses import Receive, Scope, Send
from .skeleton import Endpoint, raw_path

log = logging.getLogger("imgproxy")
PREFIX = "/o/"
_QUERY = frozenset({"replace", "render", "wait"})


class Unauthorized(ImgproxyError):
    status, error, max_age = 401, "unauthorized", None


class ClientGone(Exception):
    """The client disconnected before the body ended."""


class IngestEndpoint(Endpoint):
    prefix = PREFIX.encode()
    methods = frozenset({"PUT"})
    method_detail = "uploads are PUT"

    def __init__(self, tokens: Sequence[str], ingest: Ingest | None) -> None:
        self.tokens = tuple(token.encode() for token in tokens)
        self.ingest = ingest

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.tokens or self.ingest is None:
            raise NotFound("uploads are off: no IMGPROXY_INGEST_TOKENS set")
        self._authorize(scope)
        id, replace, render, wait = self._parse(scope)
        try:
            status, body = await self.ingest.put(
                id, _body(receive), declared=_content_length(scope), replace=replace, render=render, wait=wait,
                base_url=_base_url(scope))
        except ClientGone:
            log.info("upload to %s abandoned by the client: nothing stored", scope["path"])
            return
        data = json.dumps(body).encode()
        await send({"type": "http.response.start", "status": status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(data)).encode()),
            (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": data})

    def _authorize(self, scope: Scope) -> None:
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
        scheme, _, token = given.partition(b" ")
        if scheme.lower() != b"bearer" or not token.strip():
            raise Unauthorized("an upload needs 'Authorization: Bearer <token>'")
        token = token.strip()
        # Every token compared, in constant time each: neither the match nor its position leaks.
        if not any([hmac.compare_digest(token, known) for known in self.tokens]):
            raise Forbidden("bad token")

    def _parse(self, scope: Scope) -> tuple[str, bool, list[str] | None, bool]:
        """The id, ``replace``, ``render`` (None: the configured list) and ``wait``."""
        id = self.path(raw_path(scope))
        if "%" in id:
            raise BadRequest("an id holds no percent-escapes")
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        unknown = set(query) - _QUERY
        if unknown:
            raise BadRequest(f"unknown query parameter(s): {', '.join(sorted(unknown))}")
        render = query.get("render")
        names = None if render is None else [n for n in render.split(",") if n and n != "none"]
        return id, _flag(query, "replace"), names, _flag(query, "wait")


def _flag(query: dict[str, str], name: str) -> bool:
    value = query.get(name, "0")
    if value not in ("0", "1", "true", "false"):
        raise BadRequest(f"{name} must be 1 or 0")
    return value in ("1", "true")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                raise BadRequest("bad Content-Length") from None
    return None


def _base_url(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"host":
            return f"{scope.get('scheme', 'http')}://{value.decode('latin-1')}"
    return ""


async def _body(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        body = message.get("body", b"")
        if body:
            yield body
        if not message.get("more_body", False):
            return
