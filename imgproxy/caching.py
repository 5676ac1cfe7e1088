"""How long a response may be kept, by browsers, CDNs and the variant store's objects.

A variant URL always means the same bytes, so a variant may be kept forever.
Errors say how long they may be kept in their class (:mod:`imgproxy.errors`).
"""

from __future__ import annotations

IMMUTABLE = "public, max-age=31536000, immutable"


def for_error(max_age: int | None) -> str:
    return "no-store" if max_age is None else f"public, max-age={max_age}"
