"""Original downloads, plain ASGI: the untouched bytes behind an expiring link::

    GET|HEAD /o/<id>?e=<unix expiry>[&d=inline]&s=<signature>
      1. parse the id and the query                  400 / 403
      2. signature over "o/<id>?e=<expiry>[&d=inline]"  403
      3. expiry in the future                        403
      4. locate the original (any size)              404
      5. If-None-Match                               304
      6. Range: one range                            206 / 416

The body streams from the store a chunk at a time (local reads, S3 ranged
GETs), so a download costs a chunk of memory, never the file. The type is
sniffed from the first bytes, not trusted from the key; the name in
``Content-Disposition`` is the key's last segment (RFC 6266, with a
``filename*`` when it is not plain ASCII), with the sniffed type's extension
added when the key has none (an upload is stored as ``<id>``, and
``curl -OJ`` should still save ``htc.jpg``).
"""

from __future__ import annotations

import email.utils
import logging
import re
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from ..errors import Forbidden, ImgproxyError, Unsupported
from ..formats import ORIGINAL_EXTENSIONS
from ..stores import Downloads, Located
from ..urls import ORIGINAL_PREFIX, OriginalRequest, parse_original
from .cors import NO_CORS, Cors
from .responses import Receive, Scope, Send
from .skeleton import Endpoint, not_modified, raw_path

log = logging.getLogger("imgproxy")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_SAFE = re.compile(r"[^A-Za-z0-9._-]")
#: Magic bytes -> type. The body is served as it is, so the type says what it
#: is, not what its name claims; anything unknown is application/octet-stream.
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"II*\0", "image/tiff"),
    (0, b"MM\0*", "image/tiff"),
    (0, b"BM", "image/bmp"),
    (0, b"\xff\x0a", "image/jxl"),
    (0, b"\0\0\0\x0cJXL \r\n\x87\n", "image/jxl"),
)
_FTYP = {b"avif": "image/avif", b"avis": "image/avif", b"heic": "image/heic", b"heix": "image/heic",
         b"mif1": "image/heif", b"msf1": "image/heif"}
_EXTENSION = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/tiff": "tif", "image/bmp": "bmp",
              "image/jxl": "jxl", "image/webp": "webp", "image/avif": "avif", "image/heic": "heic",
              "image/heif": "heif"}


def sniff(head: bytes) -> str:
    for offset, magic, mime in _MAGIC:
        if head[offset:offset + len(magic)] == magic:
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return _FTYP.get(head[8:12], "application/octet-stream")
    return "application/octet-stream"  # SVG included: never served as a document from our origin


def download_name(key: str, mime: str) -> str:
    """The key's last segment, with ``mime``'s extension when it has no image extension
    (``htc.v0123456789ab``, a replaced upload's id, has none either)."""
    name = key.rpartition("/")[2]
    stem, dot, ext = name.rpartition(".")
    if (stem and dot and ext.lower() in ORIGINAL_EXTENSIONS) or mime not in _EXTENSION:
        return name
    return f"{name}.{_EXTENSION[mime]}"


def content_disposition(filename: str, inline: bool = False) -> str:
    """RFC 6266: an ASCII ``filename`` always, a UTF-8 ``filename*`` when that lost anything."""
    kind = "inline" if inline else "attachment"
    fallback = _SAFE.sub("_", filename).strip("._") or "download"
    if fallback == filename:
        return f'{kind}; filename="{fallback}"'
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


def byte_range(header: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range to ``(start, end)`` inclusive; None to serve the whole body.

    Raises :class:`RangeNotSatisfiable` when no byte of ``size`` is in it.
    Several ranges are answered with the whole body (RFC 9110 allows it).
    """
    match = _RANGE.fullmatch(header.strip())
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last n bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - n), size - 1
    start = int(first)
    if start >= size:
        raise RangeNotSatisfiable(size)
    end = min(int(last), size - 1) if last else size - 1
    if end < start:
        return None  # syntactically invalid: ignored
    return start, end


class RangeNotSatisfiable(ImgproxyError):
    status, error, max_age = 416, "range_not_satisfiable", None

    def __init__(self, size: int) -> None:
        super().__init__(f"the original has {size} bytes")
        self.size = size


class OriginalsEndpoint(Endpoint):
    prefix = ORIGINAL_PREFIX.encode()

    def __init__(self, keys: Sequence[str], store: object, cors: Cors = NO_CORS) -> None:
        self.keys = tuple(keys)
        self.cors = cors
        self.store: Downloads | None = store if isinstance(store, Downloads) else None

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = self._check(scope)
        if self.store is None:
            raise Unsupported("this originals store cannot stream downloads")
        found = await self.store.locate(request.id)
        await self._send(scope, send, request, found, scope["method"] == "HEAD")

    def error_headers(self, exc: ImgproxyError) -> Sequence[tuple[bytes, bytes]]:
        if isinstance(exc, RangeNotSatisfiable):
            return [(b"content-range", f"bytes */{exc.size}".encode())]
        return ()

    def _check(self, scope: Scope) -> OriginalRequest:
        request = parse_original(self.path(raw_path(scope)), scope.get("query_string", b""))
        self.check_signature(request.canonical, request.signature)
        if request.expires <= time.time():
            raise Forbidden("the link has expired")
        return request

    async def _send(self, scope: Scope, send: Send, request: OriginalRequest, found: Located, head: bool) -> None:
        assert self.store is not None
        left = max(0, int(request.expires - time.time()))
        headers: list[tuple[bytes, bytes]] = [
            (b"accept-ranges", b"bytes"),
            (b"etag", found.etag.encode()),
            (b"cache-control", f"private, max-age={left}".encode()),
            (b"x-content-type-options", b"nosniff"),
            *self.cors.headers(scope),
        ]
        if found.mtime is not None:
            headers.append((b"last-modified", email.utils.formatdate(found.mtime, usegmt=True).encode()))
        if not_modified(scope, found.etag):
            await send({"type": "http.response.start", "status": 304, "headers": headers})
            await send({"type": "http.response.body", "body": b""})
            return
        span = None
        request_headers = _headers(scope)
        if "range" in request_headers and request_headers.get("if-range", found.etag) == found.etag:
            span = byte_range(request_headers["range"], found.size)
        start, end = span if span is not None else (0, found.size - 1)
        chunks = self.store.read(found.key, start, end if span is not None else None)
        try:
            first = b"" if found.size == 0 else await anext(chunks, b"")
            if start == 0:
                head_bytes = first[:32]
            else:
                head_bytes = b"".join([part async for part in self.store.read(found.key, 0, 31)])
            mime = sniff(head_bytes)
            disposition = content_disposition(download_name(found.key, mime), request.inline)
            headers += [(b"content-type", mime.encode()), (b"content-disposition", disposition.encode()),
                        (b"content-length", str(end - start + 1 if found.size else 0).encode())]
            if span is not None:
                headers.append((b"content-range", f"bytes {start}-{end}/{found.size}".encode()))
            await send({"type": "http.response.start", "status": 206 if span is not None else 200,
                        "headers": headers})
            if head:
                await send({"type": "http.response.body", "body": b""})
                return
            try:
                await send({"type": "http.response.body", "body": first, "more_body": True})
                async for chunk in chunks:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except (ImgproxyError, OSError) as exc:
                # Too late for an error response: end without the last body
                # message, so the server drops the connection and the client
                # sees a short body, never a complete-looking one.
                log.error("download of %s broke off: %s", found.key, exc)
                return
            await send({"type": "http.response.body", "body": b""})
        finally:
            await chunks.aclose()


def _headers(scope: Scope) -> dict[str, str]:
    out: dict[str, Any] = {}
    for name, value in scope["headers"]:
        out.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return out
