"""Originals that failed to decode, remembered so they are not decoded again.

A render that fails because of its input (413, 415, 422, including a worker
that crashed on it) is remembered under the original's *identity*: its key
plus ETag or size/mtime, so a changed original is tried afresh. Failures that
are not the input's fault (503, 504) are never remembered.

415 and 422 are properties of the bytes and are remembered for the original
as a whole; 413 can depend on the preset and format (output pixels, frames
kept for an animated output), so it is remembered per variant. A bounded LRU:
an attacker uploading endless broken files evicts old entries, not memory.
"""

from __future__ import annotations

from cachetools import LRUCache

from ..errors import ImgproxyError, TooLarge, Undecodable, Unsupported

_REMEMBERED = (TooLarge, Unsupported, Undecodable)


class FailedOriginals:
    def __init__(self, size: int = 10_000) -> None:
        self._lru: LRUCache[tuple[str, str], ImgproxyError] = LRUCache(maxsize=size)

    def check(self, identity: str, variant_key: str) -> None:
        """Raise the remembered failure of this original (or this variant of it)."""
        error = self._lru.get((identity, "")) or self._lru.get((identity, variant_key))
        if error is not None:
            raise _copy(error)

    def remember(self, identity: str, variant_key: str, error: ImgproxyError) -> None:
        if not isinstance(error, _REMEMBERED):
            return
        scope = variant_key if isinstance(error, TooLarge) else ""
        self._lru[(identity, scope)] = error

    def __len__(self) -> int:
        return len(self._lru)


def _copy(error: ImgproxyError) -> ImgproxyError:
    """A fresh exception per request: raising one instance twice chains tracebacks."""
    return type(error)(error.detail, **error.extra)
