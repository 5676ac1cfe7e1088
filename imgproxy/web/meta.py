"""The metadata endpoint, plain ASGI like the variant endpoint::

    GET|HEAD /meta/<id>.json?s=<signature>      signature over "meta/<id>"
      1. query: exactly one ``s``                   400 / 403
      2. parse the id                               400
      3. signature                                  403
      4. memory -> store -> MetaJob (variants.py)   404 / 413 / 415 / 422 / 503 / 504
      5. If-None-Match                              304

The document is made once per original (and GPS setting) in a render worker,
stored beside the variants and served with their immutable cache headers.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..errors import BadRequest, Forbidden, ImgproxyError, MethodNotAllowed
from ..metrics import REQUESTS
from ..signing import meta_canonical, verify
from ..urls import META_PREFIX, parse_meta_path, signature_from_query
from ..variants import VariantService
from .endpoint import _not_modified
from .responses import Receive, Scope, Send, VariantHeaders, not_modified_headers, send_error

log = logging.getLogger("imgproxy")
_PREFIX = META_PREFIX.encode()


class MetaEndpoint:
    def __init__(self, keys: Sequence[str], variants: VariantService, gps: bool) -> None:
        self.keys = tuple(keys)
        self.variants = variants
        self.gps = gps
        self.headers = VariantHeaders(size=4096)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        head = method == "HEAD"
        if method not in ("GET", "HEAD"):
            await send_error(send, MethodNotAllowed("only GET and HEAD are allowed"))
            return
        try:
            id = self._check(scope)
            key, blob, tier = await self.variants.describe(id, self.gps)
        except ImgproxyError as exc:
            REQUESTS.labels(exc.error).inc()
            await send_error(send, exc, head=head)
            return
        except Exception:  # a bug, not bad input: say so, keep serving
            log.exception("unhandled error (category: bug) for %s", scope.get("path"))
            REQUESTS.labels("internal").inc()
            await send_error(send, ImgproxyError("internal error"), head=head)
            return
        headers = self.headers.get(key, blob, "application/json")
        if _not_modified(scope, blob.etag):
            await send({"type": "http.response.start", "status": 304, "headers": not_modified_headers(headers)})
            await send({"type": "http.response.body", "body": b""})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*headers, (b"x-imgproxy-tier", tier.encode())]})
        await send({"type": "http.response.body", "body": b"" if head else blob.body})

    def _check(self, scope: Scope) -> str:
        raw: bytes = scope.get("raw_path") or scope["path"].encode()
        signature = signature_from_query(scope.get("query_string", b""))
        try:
            path = raw[len(_PREFIX):].decode("ascii")
        except UnicodeDecodeError:
            raise BadRequest("the path must be ASCII") from None
        id = parse_meta_path(path)
        if not verify(self.keys, meta_canonical(id), signature):
            raise Forbidden("bad signature")
        return id
