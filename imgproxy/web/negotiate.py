"""``/v/<preset>/<id>.auto``: the output format chosen by the request's ``Accept``.

AVIF, then WebP, then JPEG; PNG instead of JPEG when the original has alpha
and the client takes neither AVIF nor WebP. Only types the client names
count: ``*/*`` and ``image/*`` are what every client sends, including those
that cannot decode AVIF, so a wildcard means "the fallback".

The chosen format is an ordinary one, picked before the variant key is made,
so the store, the memory tier and single-flight all key on it: ``.auto`` never
renders what ``.webp`` already rendered, and a herd of ``.auto`` requests with
mixed ``Accept`` renders each chosen format once.

Alpha is known without decoding on every hit: it is asked only on the rare
path that needs it (neither AVIF nor WebP accepted), by a header probe of the
original in a worker, and remembered per process by id (bounded; cleared
whole when full). An original replaced under the same id keeps its variants
anyway (they are immutable), so a remembered answer is as fresh as they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace

from ..urls import VariantRequest

#: Ids whose alpha is remembered per process.
ALPHA_MEMO = 65536


def accepted(accept: bytes) -> frozenset[str]:
    """The ``image/avif`` / ``image/webp`` types named with q > 0."""
    types = set()
    for part in accept.decode("latin-1").lower().split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if media not in ("image/avif", "image/webp"):
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0:
            types.add(media)
    return frozenset(types)


class Negotiator:
    def __init__(self, has_alpha: Callable[[str], Awaitable[bool]]) -> None:
        self._has_alpha = has_alpha
        self._alpha: dict[str, bool] = {}

    async def choose(self, request: VariantRequest, accept: bytes) -> VariantRequest:
        types = accepted(accept)
        if "image/avif" in types:
            fmt = "avif"
        elif "image/webp" in types:
            fmt = "webp"
        else:
            fmt = "png" if await self._alpha_of(request.id) else "jpg"
        return replace(request, fmt=fmt)  # the same request (width, focus, ...) in that format

    async def _alpha_of(self, id: str) -> bool:
        alpha = self._alpha.get(id)
        if alpha is None:
            alpha = await self._has_alpha(id)
            if len(self._alpha) >= ALPHA_MEMO:
                self._alpha.clear()
            self._alpha[id] = alpha
        return alpha
