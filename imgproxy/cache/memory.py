"""The memory tier: an LRU of variants bounded by their bytes.

"Off" (size 0) is a class that stores nothing, so callers never check.
"""

from __future__ import annotations

from cachetools import LRUCache

from ..stores import Blob

_OVERHEAD = 512  # bytes per entry for the object, key and headers


class MemoryTier:
    def __init__(self, max_bytes: int) -> None:
        self._lru: LRUCache[str, Blob] = LRUCache(
            maxsize=max_bytes, getsizeof=lambda v: len(v.body) + _OVERHEAD
        )

    def get(self, key: str) -> Blob | None:
        return self._lru.get(key)

    def put(self, key: str, blob: Blob) -> None:
        if len(blob.body) + _OVERHEAD <= self._lru.maxsize:
            self._lru[key] = blob

    @property
    def bytes(self) -> int:
        return int(self._lru.currsize)


class NoMemoryTier:
    bytes = 0

    def get(self, key: str) -> Blob | None:
        return None

    def put(self, key: str, blob: Blob) -> None:
        pass


def memory_tier(max_bytes: int) -> MemoryTier | NoMemoryTier:
    return MemoryTier(max_bytes) if max_bytes > 0 else NoMemoryTier()
