"""Where originals come from and where variants go.

A store is picked from a table by the URL scheme of its setting, so callers
never branch on the kind of store::

    file:///srv/originals      -> stores.local.LocalOriginals / LocalVariants
    s3://bucket/prefix         -> stores.s3.S3Originals / S3Variants
    https://host/prefix/       -> stores.http.HttpOriginals

(the table is in :mod:`imgproxy.app`). Each implementation has an async
``open(url, settings, clients)`` class method; network stores take their
client from :class:`imgproxy.clients.Clients`, one per process.

An *original* is named by an id without extension; it may be stored as
``<id>`` or ``<id>.<ext>`` for any of :data:`ORIGINAL_EXTENSIONS`, and the
store resolves which (only on a miss, since hits never reach it).
"""

from __future__ import annotations

import email.utils
import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import AsyncContextManager, AsyncIterable, Iterator, Protocol
from urllib.parse import urlsplit

import anyio

from ..errors import GatewayTimeout, TooLarge
from ..presets import CONTENT_TYPES
from ..render import Source

ORIGINAL_EXTENSIONS = (
    "jpg", "jpeg", "png", "webp", "avif", "heic", "heif", "gif", "tif", "tiff", "svg", "svgz",
    "jxl", "jp2", "bmp",
)


@dataclass(frozen=True)
class Original:
    key: str  # the store key it was found under, extension included
    identity: str  # changes when the original changes (key + ETag or size/mtime)
    source: Source


@dataclass(frozen=True, slots=True)
class Variant:
    """A rendered variant with the response headers that never change."""

    body: bytes
    content_type: str
    etag: str
    last_modified: str
    headers: tuple[tuple[bytes, bytes], ...] = field(repr=False, default=())

    @classmethod
    def make(cls, body: bytes, content_type: str, mtime: float) -> Variant:
        etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
        last_modified = email.utils.formatdate(mtime, usegmt=True)
        headers = (
            (b"content-type", content_type.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"cache-control", b"public, max-age=31536000, immutable"),
            (b"etag", etag.encode()),
            (b"last-modified", last_modified.encode()),
            (b"x-content-type-options", b"nosniff"),
        )
        return cls(body, content_type, etag, last_modified, headers)


class OriginalStore(Protocol):
    async def fetch(self, id: str) -> Original:
        """The original for ``id``; raises NotFound, TooLarge or Unavailable."""

    async def aclose(self) -> None: ...


class VariantStore(Protocol):
    async def get(self, key: str) -> Variant | None: ...

    async def put(self, key: str, variant: Variant, metadata: dict[str, str]) -> bool:
        """Store atomically, never overwriting; False if it was already there."""

    def lease(self, key: str) -> AsyncContextManager[Variant | None]:
        """Exclusive right to render ``key`` across processes and machines.

        Yields the variant if another holder stored it while we waited (then
        there is nothing to render), else None while the lease is ours.
        """

    async def aclose(self) -> None: ...


def file_path(url: str) -> str:
    """``file:///abs`` or ``file://./relative`` to a filesystem path."""
    parts = urlsplit(url)
    return f".{parts.path}" if parts.netloc == "." else parts.path


def content_type_of(key: str) -> str:
    return CONTENT_TYPES.get(key.rpartition(".")[2], "application/octet-stream")


@contextmanager
def download_deadline(seconds: float) -> Iterator[None]:
    """Fetching one original (every request it takes) within ``download_timeout``."""
    try:
        with anyio.fail_after(seconds):
            yield
    except TimeoutError:
        raise GatewayTimeout(f"downloading the original took over {seconds:g}s",
                             limit="download_timeout") from None


async def read_capped(chunks: AsyncIterable[bytes], limit: int) -> bytes:
    """A streamed original, refused (413) as soon as it passes ``limit`` bytes."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"original is over the limit of {limit} bytes", limit="max_source_bytes")
        parts.append(chunk)
    return b"".join(parts)
