"""Originals that failed to decode, remembered so they are not decoded again.

A render that fails because of its input (413, 415, 422, including a worker
that crashed on it) is remembered under the original's *identity*: its key
plus ETag or size/mtime, so a changed original is tried afresh. Failures that
are not the input's fault (503, 504) are never remembered.

How far a failure reaches decides its scope, so an answer never depends on
which variant happened to be asked for first:

- the whole original: 415 (its format is what it is) and a worker crash
  (422 with ``signal``: never feed a decoder-crashing file to a worker twice);
- one variant: 413 (output pixels and animation frames depend on the preset
  and format) and other 422s (an animated GIF with one broken frame fails as
  animated WebP but renders its first frame as JPEG).

A bounded LRU: endless broken uploads evict old entries, they do not grow memory.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cachetools import LRUCache

from ..errors import ImgproxyError, TooLarge, Undecodable, Unsupported

_REMEMBERED = (TooLarge, Unsupported, Undecodable)


@dataclass(frozen=True, slots=True)
class _Failure:
    """What is remembered of a failure: never the exception itself, whose
    traceback holds the render's frames and, through them, the original's bytes."""

    kind: type[ImgproxyError]
    detail: str
    extra: Mapping[str, str | int | float]

    def error(self) -> ImgproxyError:
        return self.kind.rebuilt(self.detail, self.extra)


class FailedOriginals:
    def __init__(self, size: int = 10_000) -> None:
        self._lru: LRUCache[tuple[str, str], _Failure] = LRUCache(maxsize=size)

    def check(self, identity: str, variant_key: str) -> None:
        """Raise the remembered failure of this original (or this variant of it)."""
        failure = self._lru.get((identity, "")) or self._lru.get((identity, variant_key))
        if failure is not None:
            raise failure.error()

    def remember(self, identity: str, variant_key: str, error: ImgproxyError) -> None:
        if not isinstance(error, _REMEMBERED):
            return
        whole = isinstance(error, Unsupported) or "signal" in error.extra
        scope = "" if whole else variant_key
        extra = {k: v for k, v in error.extra.items() if isinstance(v, (str, int, float))}
        self._lru[(identity, scope)] = _Failure(type(error), error.detail, MappingProxyType(extra))

    def __len__(self) -> int:
        return len(self._lru)
