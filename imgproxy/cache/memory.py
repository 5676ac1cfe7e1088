"""The memory tier: an LRU of variants bounded by their bytes.

An ``OrderedDict`` in least-recently-used order: a hit is one lookup and one
``move_to_end``, both in C (cachetools' ``LRUCache`` took three Python calls).
"Off" (size 0) is a class that stores nothing, so callers never check.
"""

from __future__ import annotations

from collections import OrderedDict

from ..stores import Blob

_OVERHEAD = 512  # bytes per entry for the object, key and headers


class MemoryTier:
    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._blobs: OrderedDict[str, Blob] = OrderedDict()
        self._bytes = 0

    def get(self, key: str) -> Blob | None:
        blob = self._blobs.get(key)
        if blob is not None:
            self._blobs.move_to_end(key)
        return blob

    def put(self, key: str, blob: Blob) -> None:
        size = len(blob.body) + _OVERHEAD
        if size > self.max_bytes:
            return
        old = self._blobs.pop(key, None)
        if old is not None:
            self._bytes -= len(old.body) + _OVERHEAD
        while self._bytes + size > self.max_bytes:
            _, evicted = self._blobs.popitem(last=False)
            self._bytes -= len(evicted.body) + _OVERHEAD
        self._blobs[key] = blob
        self._bytes += size

    @property
    def bytes(self) -> int:
        return self._bytes


class NoMemoryTier:
    bytes = 0

    def get(self, key: str) -> Blob | None:
        return None

    def put(self, key: str, blob: Blob) -> None:
        pass


def memory_tier(max_bytes: int) -> MemoryTier | NoMemoryTier:
    return MemoryTier(max_bytes) if max_bytes > 0 else NoMemoryTier()
