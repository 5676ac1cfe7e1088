"""Originals that failed to decode, remembered so they are not decoded again.

A render that fails because of its input (413, 415, 422, including a worker
that crashed on it) is remembered under the original's *identity*: its key
plus ETag or size/mtime, so a changed original is tried afresh. Failures that
are not the input's fault (503, a 504 while waiting for a worker) are never
remembered.

How far a failure reaches decides its scope, so an answer never depends on
which variant happened to be asked for first:

- the whole original: 415 (its format is what it is), a worker crash (422
  with ``signal``: never feed a decoder-crashing file to a worker twice more),
  and repeated render timeouts;
- one variant: 413 (output pixels and animation frames depend on the preset
  and format) and other 422s (an animated GIF with one broken frame fails as
  animated WebP but renders its first frame as JPEG).

How long: a 413/415/422 for :data:`REMEMBER_SECONDS` (the hour its answer may
be cached for). A render that ran past ``render_timeout`` is the input's cost
too, and a free one to replay (56 variant URLs per original): after
:data:`TIMEOUT_STRIKES` within :data:`TIMEOUT_WINDOW` seconds the whole
original is answered 504 at once for :data:`TIMEOUT_SECONDS`.

Memory is per server process, on purpose: every process reaches the same
answer from the same bytes (a crash is confirmed by a second worker before
it is remembered, see :mod:`imgproxy.variants.service`), so sharing would only save
each process its first failed attempt, at the price of a store round trip on
every miss.

A bounded LRU: endless broken uploads evict old entries, they do not grow memory.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from cachetools import LRUCache

from ..errors import GatewayTimeout, ImgproxyError, RenderTimeout, TooLarge, Undecodable, Unsupported

_REMEMBERED = (TooLarge, Unsupported, Undecodable)
REMEMBER_SECONDS = 3600.0
TIMEOUT_STRIKES = 2
TIMEOUT_WINDOW = 600.0
TIMEOUT_SECONDS = 600.0


@dataclass(frozen=True, slots=True)
class _Failure:
    """What is remembered of a failure: never the exception itself, whose
    traceback holds the render's frames and, through them, the original's bytes."""

    kind: type[ImgproxyError]
    detail: str
    extra: Mapping[str, str | int | float]
    until: float  # on the memo's clock

    def error(self) -> ImgproxyError:
        return self.kind.rebuilt(self.detail, self.extra)


class FailedOriginals:
    def __init__(self, size: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self._lru: LRUCache[tuple[str, str], _Failure] = LRUCache(maxsize=size)
        self._timeouts: LRUCache[str, tuple[int, float]] = LRUCache(maxsize=size)  # identity -> (strikes, first)
        self._clock = clock

    def check(self, identity: str, variant_key: str) -> None:
        """Raise the remembered failure of this original (or this variant of it)."""
        now = self._clock()
        for scope in ("", variant_key):
            failure = self._lru.get((identity, scope))
            if failure is None:
                continue
            if failure.until <= now:
                del self._lru[(identity, scope)]
                continue
            raise failure.error()

    def remember(self, identity: str, variant_key: str, error: ImgproxyError) -> None:
        if isinstance(error, RenderTimeout):
            self._timed_out(identity, error)
            return
        if not isinstance(error, _REMEMBERED):
            return
        whole = isinstance(error, Unsupported) or "signal" in error.extra
        scope = "" if whole else variant_key
        extra = {k: v for k, v in error.extra.items() if isinstance(v, (str, int, float))}
        self._lru[(identity, scope)] = _Failure(type(error), error.detail, MappingProxyType(extra),
                                                self._clock() + REMEMBER_SECONDS)

    def _timed_out(self, identity: str, error: RenderTimeout) -> None:
        now = self._clock()
        strikes, first = self._timeouts.get(identity, (0, now))
        if now - first > TIMEOUT_WINDOW:
            strikes, first = 0, now
        strikes += 1
        if strikes < TIMEOUT_STRIKES:
            self._timeouts[identity] = (strikes, first)
            return
        self._timeouts.pop(identity, None)
        detail = (f"rendering this original ran past render_timeout {strikes} times; "
                  f"it is not tried again for {TIMEOUT_SECONDS:g}s")
        self._lru[(identity, "")] = _Failure(GatewayTimeout, detail, MappingProxyType({"limit": "render_timeout"}),
                                             now + TIMEOUT_SECONDS)

    def __len__(self) -> int:
        return len(self._lru)
