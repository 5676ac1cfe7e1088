"""The metadata endpoint, plain ASGI like the variant endpoint::

    GET|HEAD /meta/<id>.json?s=<signature>      signature over "meta/<id>"
      1. query: exactly one ``s``                   400 / 403
      2. parse the id                               400
      3. signature                                  403
      4. memory -> store -> MetaJob (variants/)     404 / 413 / 415 / 422 / 503 / 504
      5. If-None-Match                              304

The document is made once per original (and GPS setting) in a render worker,
stored beside the variants and served with their immutable cache headers.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..signing import meta_canonical
from ..urls import META_PREFIX, parse_meta_path, signature_from_query
from ..variants.service import VariantService
from .cors import NO_CORS, Cors
from .responses import Receive, Scope, Send, VariantHeaders
from .skeleton import Endpoint, not_modified, raw_path, send_not_modified


class MetaEndpoint(Endpoint):
    prefix = META_PREFIX.encode()

    def __init__(self, keys: Sequence[str], variants: VariantService, gps: bool, cors: Cors = NO_CORS,
                 surrogate: str = "") -> None:
        self.keys = tuple(keys)
        self.variants = variants
        self.gps = gps
        self.cors = cors
        self.headers = VariantHeaders(size=4096, cors=cors, surrogate=surrogate)

    async def serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        signature = signature_from_query(scope.get("query_string", b""))
        id = parse_meta_path(self.path(raw_path(scope)))
        self.check_signature(meta_canonical(id), signature)
        key, blob, tier = await self.variants.describe(id, self.gps)
        headers = self.headers.get(key, blob, "application/json", id)
        if self.cors.listed:  # the one CORS header that depends on the request
            headers = (*headers, *self.cors.echo(scope))
        if not_modified(scope, blob.etag):
            await send_not_modified(send, headers)
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [*headers, (b"x-imgproxy-tier", tier.encode())]})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else blob.body})
