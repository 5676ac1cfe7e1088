"""The variant endpoint, as a plain ASGI app: the hit path is a few dict
lookups and two ``send`` calls, with no framework objects built per request.

    GET|HEAD /v/<preset>/<id>.<fmt>?s=<signature>
      1. query: exactly one ``s``                   400 / 403 (308 to it: canonical.py)
         or none at all, for a public preset      403 (private) / 400 (focal point)
      2. parse preset, id, format                   400
      3. signature over the raw path                403
      4. preset known; its width ladder, crop       404 / 400
      5. memory -> store -> render (variants/)      404 / 413 / 415 / 422 / 503 / 504
      6. If-None-Match                              304

With ``IMGPROXY_FALLBACK``, a 404, 415 or 422 of step 5 (the original's, never
the URL's: a 400, a 403, an unknown preset) is answered with the fallback
original in the same preset, width and format, rendered and stored under its
own id like any variant (so once per variant), with the status it stands in for
(or 200), a short ``Cache-Control``, no ETag and ``X-Imgproxy-Fallback: 1``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace

from ..caching import for_error
from ..errors import BadRequest, Forbidden, ImgproxyError, MethodNotAllowed, NotFound, Undecodable, Unsupported
from ..formats import AUTO, OUTPUTS
from ..metrics import OUTCOME, REQUESTS
from ..modifiers import check_modifiers
from ..presets import Preset
from ..urls import PREFIX, VariantRequest, parse_path, signature_from_query
from ..variants.service import VariantService
from .canonical import canonical_location
from .cors import NO_CORS, Cors, vary_header
from .logs import RECORD, note_error
from .negotiate import Negotiator
from .responses import Receive, Scope, Send, VariantHeaders, not_modified_headers, send_redirect, server_timing
from .skeleton import GET_HEAD, Endpoint, not_modified

_TIER = {tier: (b"x-imgproxy-tier", tier.encode()) for tier in ("memory", "store", "render")}
_TIER["joined"] = _TIER["render"]  # served by a render another request started
#: The failures of an original that a fallback image stands in for.
FALLS_BACK = (NotFound, Unsupported, Undecodable)
_FALLBACK = (b"x-imgproxy-fallback", b"1")

log = logging.getLogger("imgproxy")

#: Verified URLs remembered per process; cleared whole when full (cheaper than LRU).
VERIFIED_URLS = 65536


class VariantEndpoint(Endpoint):
    prefix = PREFIX.encode()

    def __init__(self, keys: Sequence[str], presets: Mapping[str, Preset], variants: VariantService,
                 not_found_max_age: int = 60, auto: bool = True, cors: Cors = NO_CORS,
                 fallback: str = "", fallback_ok: bool = False, surrogate: str = "") -> None:
        self.keys = tuple(keys)
        self.cors = cors
        self.fallback = fallback  # the id of the original served for a missing or broken one
        self.fallback_ok = fallback_ok  # 200 for it, rather than the status it stands in for
        self._falls_back: tuple[type[ImgproxyError], ...] = FALLS_BACK if fallback else ()
        self.not_found_max_age = not_found_max_age
        self.presets = presets
        self.variants = variants
        self.headers = VariantHeaders(cors=cors, surrogate=surrogate)
        # Explicit formats never pay for Vary: Accept.
        self.auto_headers = VariantHeaders(vary=True, cors=cors, surrogate=surrogate)
        self.negotiator = Negotiator(variants.has_alpha) if auto else None
        # Exact URL bytes whose signature and path were already checked: a repeat
        # request skips the HMAC and parsing. Keys and presets only change with
        # a restart, so an entry can never outlive the reason it was valid.
        self._verified: dict[tuple[bytes, bytes], tuple[VariantRequest, Preset]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # The skeleton's __call__ and method check, inlined: the hit path calls
        # and awaits nothing of ours beyond the lookups.
        method = scope["method"]
        try:
            if method not in GET_HEAD:
                raise MethodNotAllowed(self.method_detail)
            request, preset = self._checked(scope)
            auto = request.fmt == AUTO
            try:
                if auto:
                    request = await self._negotiate(scope, request)
                key, blob, tier, timings = await self.variants.serve(request, preset)
            except self._falls_back as exc:  # () when there is no fallback: catches nothing
                await self._fall_back(scope, send, request, preset, auto, exc)
                return
        except Exception as exc:
            if isinstance(exc, BadRequest) and (location := canonical_location(self.keys, scope)) is not None:
                OUTCOME["redirect"].inc()
                await send_redirect(send, location, self.cors.headers(scope))
                return
            await self.fail(scope, send, exc)
            return
        record = scope.get(RECORD)
        if record is not None:
            record.tier = tier
        headers = (self.auto_headers if auto else self.headers).get(key, blob, OUTPUTS[request.fmt].mime, request.id)
        if self.cors.listed:  # the one CORS header that depends on the request (``*`` is in ``headers``)
            headers = (*headers, *self.cors.echo(scope))
        if not_modified(scope, blob.etag):
            OUTCOME["not_modified"].inc()
            await send({"type": "http.response.start", "status": 304, "headers": not_modified_headers(headers)})
            await send({"type": "http.response.body", "body": b""})  # send_not_modified's, inlined
            return
        OUTCOME[tier].inc()
        extra = [_TIER[tier]] if timings is None else [_TIER[tier], server_timing(timings)]
        await send({"type": "http.response.start", "status": 200, "headers": [*headers, *extra]})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else blob.body})

    async def _fall_back(self, scope: Scope, send: Send, request: VariantRequest, preset: Preset, auto: bool,
                         failed: ImgproxyError) -> None:
        """The fallback original as ``request`` (its focal point dropped: it was the other image's),
        answered with ``failed``'s status; ``failed`` itself when even the fallback fails."""
        stand_in = replace(request, id=self.fallback, focus=None)
        try:
            if stand_in.fmt == AUTO:  # the negotiation itself failed on the missing original
                stand_in = await self._negotiate(scope, stand_in)
            _, blob, tier, _ = await self.variants.serve(stand_in, preset)
        except ImgproxyError as exc:
            log.warning("fallback %s for %s failed (category: %s): %s", self.fallback, request.id, exc.error,
                        exc.detail)
            await self.fail(scope, send, failed)
            return
        REQUESTS.labels(failed.error).inc()  # counted and logged as what it stands in for
        note_error(scope, failed.error)
        record = scope.get(RECORD)
        if record is not None:
            record.tier = tier
        headers = [(b"content-type", OUTPUTS[stand_in.fmt].mime.encode()),
                   (b"content-length", str(len(blob.body)).encode()),
                   (b"cache-control", for_error(self.not_found_max_age).encode()),
                   (b"x-content-type-options", b"nosniff"), _FALLBACK, _TIER[tier], *self.cors.fixed,
                   *self.cors.echo(scope), *self.headers.surrogate(request.id)]  # the URL's original, not the stand-in
        if (vary := vary_header(auto, self.cors)) is not None:
            headers.append((b"vary", vary))
        await send({"type": "http.response.start", "status": 200 if self.fallback_ok else failed.status,
                    "headers": headers})
        await send({"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else blob.body})

    async def _negotiate(self, scope: Scope, request: VariantRequest) -> VariantRequest:
        if self.negotiator is None:
            raise BadRequest("the auto format is switched off on this server")
        accept = next((value for name, value in scope["headers"] if name == b"accept"), b"")
        return await self.negotiator.choose(request, accept)

    def _checked(self, scope: Scope) -> tuple[VariantRequest, Preset]:
        raw = scope.get("raw_path") or scope["path"].encode()
        url = (raw, scope.get("query_string", b""))
        checked = self._verified.get(url)
        if checked is None:
            checked = self._check(raw, url[1])
            if len(self._verified) >= VERIFIED_URLS:
                self._verified.clear()
            self._verified[url] = checked
        return checked

    def _check(self, raw: bytes, query: bytes) -> tuple[VariantRequest, Preset]:
        if not query:
            return self._check_unsigned(raw)
        signature = signature_from_query(query)
        path = self.path(raw)
        request = parse_path(path)  # the shape first: a malformed URL is 400 whatever its signature
        self.check_signature(path, signature)
        preset = self.presets.get(request.preset)
        if preset is None:
            raise NotFound(f"unknown preset {request.preset!r}")
        check_modifiers(request.width, request.focus, preset)  # 400: a width off the ladder, ...
        return request, preset

    def _check_unsigned(self, raw: bytes) -> tuple[VariantRequest, Preset]:
        """A URL with no query at all: served only for a public preset, at its own
        size or a ladder width, with no focal point (nothing free-form)."""
        request = parse_path(self.path(raw))
        preset = self.presets.get(request.preset)
        if preset is None or not preset.public:  # a private or unknown preset: as before
            raise Forbidden("missing signature")
        if request.focus is not None:
            raise BadRequest(f"preset {preset.name!r} is public: an unsigned URL may not carry a focal point")
        check_modifiers(request.width, None, preset)  # 400: a width off the ladder
        return request, preset
