"""The keys imgproxy writes itself, seen from the originals store: never originals.

Where one bucket (or folder) holds both stores, say ``IMGPROXY_ORIGINALS=s3://loop``
and ``IMGPROXY_VARIANTS=s3://loop/variants``, the originals store also sees:

- the variant store: variants, ``_meta/`` documents, ``.leases/``; everything
  under its root when that lies inside the originals store, and only what has
  a variant key's shape (``<preset>/<digest>/…``, ``_meta/``) when both share
  one root;
- any dot-segment: leases, locks, ``.tmp-*`` files being written, ``.<name>.sha256``
  side files (store listings skip these already).

Taken for originals, they feed on themselves: a bucket notification for a
lease becomes a job whose variants take leases that notify again. The
consumer's S3 events and ``warm --prefix`` both ask :meth:`KeySpace.own`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import file_path

# variants.variant_key (a preset name, then its 12-hex digest and any @modifiers)
# and variants.meta_key; spelled here because stores sit below variants.
_VARIANT_KEY = re.compile(r"_meta/|[a-z0-9][a-z0-9_-]*/[0-9a-f]{12}(@[^/]*)?/")


@dataclass(frozen=True)
class KeySpace:
    """Where originals live, and which keys there are imgproxy's own."""

    originals: str  # the originals store's root, as a place and prefix ("s3://b/up/", "/srv/o/")
    variants: str | None  # the variant store's, when it shares the originals store's place

    def key_of(self, url: str) -> str | None:
        """The originals store's key for ``s3://bucket/key`` (or a path), None if outside it."""
        return url[len(self.originals):] if url.startswith(self.originals) else None

    def own(self, key: str) -> bool:
        """Whether ``key`` (below the originals store's root) is imgproxy's own write."""
        if any(segment.startswith(".") for segment in key.split("/")):
            return True
        full = self.originals + key
        if self.variants is None or not full.startswith(self.variants):
            return False
        # Variants nested inside the originals: all theirs. One shared root: only variant-shaped keys.
        return len(self.variants) > len(self.originals) or bool(_VARIANT_KEY.match(full[len(self.variants):]))


def key_space(originals: str, variants: str) -> KeySpace:
    """The key space of these two store URLs (``IMGPROXY_ORIGINALS``, ``IMGPROXY_VARIANTS``)."""
    mine, theirs = _root(originals), _root(variants)
    shared = theirs.startswith(mine) or mine.startswith(theirs)
    return KeySpace(mine, theirs if shared else None)


def _root(url: str) -> str:
    """A store's root as one comparable string ending in ``/``."""
    parts = urlsplit(url.split(",")[0].strip())
    if parts.scheme == "file":
        return os.path.abspath(file_path(url)).rstrip("/") + "/"
    return f"{parts.scheme}://{parts.netloc}/{parts.path.strip('/')}".rstrip("/") + "/"
