"""Where originals come from and where variants go.

A store is picked from a table by the URL scheme of its setting, so callers
never branch on the kind of store::

    file:///srv/originals      -> stores.local.LocalOriginals / LocalVariants
    s3://bucket/prefix         -> stores.s3.S3Originals / S3Variants
    https://host/prefix/       -> stores.http.HttpOriginals

(the table is in :mod:`imgproxy.variants.services`). Each implementation has an async
``open(url, settings, clients)`` class method; network stores take their
client from :class:`imgproxy.stores.clients.Clients`, one per process.

An *original* is named by an id without extension; it may be stored as
``<id>`` or ``<id>.<ext>`` for any of :data:`ORIGINAL_EXTENSIONS`, and the
store resolves which (only on a miss, since hits never reach it). Every store
and process resolves the same way: the exact key ``<id>`` first, else the
first of :func:`extension_keys` that exists (:func:`first_key`), so a restart
never changes what an id means. Uploads keep ids from gaining a second key
(:mod:`imgproxy.variants.uploads`); one that has several anyway is logged once.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Collection, Iterator, Mapping
from contextlib import AbstractAsyncContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

import anyio

from ..errors import GatewayTimeout
from ..formats import ORIGINAL_EXTENSIONS
from ..render import Source
from .spool import Spooled

__all__ = ["ORIGINAL_EXTENSIONS", "Blob", "Downloads", "Located", "ObjectStat", "Original", "OriginalFiles",
           "OriginalStore", "VariantStore", "download_deadline", "extension_keys", "file_path", "first_key", "id_of"]

log = logging.getLogger("imgproxy.stores")
#: ``.jpg``, ``.JPG``, ``.jpeg``, ...: the order that decides between an id's keys.
_SUFFIXES = tuple(f".{ext}" for e in ORIGINAL_EXTENSIONS for ext in (e, e.upper()))
#: Ids already warned about, per process (cleared whole when full).
_warned: set[str] = set()


@dataclass(frozen=True)
class Original:
    key: str  # the store key it was found under, extension included
    identity: str  # changes when the original changes (key + ETag or size/mtime)
    source: Source
    spooled: Spooled | None = None  # a fetched original's spool file (stores/spool.py)

    def close(self) -> None:
        """Done with it: a fetched original's file is removed and its budget given back."""
        if self.spooled is not None:
            self.spooled.close()


@dataclass(frozen=True, slots=True)
class Blob:
    """A stored variant's bytes and the facts about them; HTTP is the web layer's."""

    body: bytes
    etag: str  # a strong validator: a hash of the bytes, quoted
    mtime: float  # when it was stored (or rendered), seconds since the epoch

    @classmethod
    def of(cls, body: bytes, mtime: float) -> Blob:
        return cls(body, '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"', mtime)


class OriginalStore(Protocol):
    async def fetch(self, id: str) -> Original:
        """The original for ``id``; raises NotFound, TooLarge or Unavailable."""

    def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        """Every original's store key (extension included) below ``prefix``, in no
        set order; raises Unsupported where a store cannot list (HTTP origins)."""

    async def aclose(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ObjectStat:
    """What a store knows of a stored object without reading it."""

    size: int
    etag: str | None  # S3's ETag, unquoted; None where the store keeps no hash (local files)
    sha256: str | None = None  # hex, where one was recorded on write (ingest does)


@runtime_checkable
class OriginalFiles(Protocol):
    """Originals as whole objects by store key, for ``imgproxy copy`` and uploads (local
    and S3; an HTTP origin is not one: ``isinstance(store, OriginalFiles)`` says which)."""

    def list_keys(self, prefix: str = "") -> AsyncIterator[str]: ...

    async def stat(self, key: str) -> ObjectStat | None:
        """Size (and hash, where kept) of ``key``; None if it is not there."""

    def read(self, key: str) -> AsyncGenerator[bytes, None]:
        """``key``'s bytes in chunks, never all at once; raises NotFound."""

    async def write(self, key: str, chunks: AsyncIterable[bytes], size: int, *,
                    sha256: str | None = None, exclusive: bool = False) -> str | None:
        """Store ``size`` bytes as ``key`` atomically, replacing what is there, holding
        at most one part in memory; the new object's ETag where the store has one.
        ``sha256`` is recorded beside it (S3 metadata, a local dot-file); with
        ``exclusive`` an existing ``key`` is never replaced (raises Conflict)."""

    async def delete(self, key: str) -> bool:
        """Remove ``key`` (and its recorded hash); False if it was not there."""

    async def find_key(self, id: str) -> str | None:
        """The key the original ``id`` is stored under (``<id>`` or ``<id>.<ext>``), or None."""

    async def written(self, key: str, source: Source, etag: str | None = None) -> Original:
        """``key`` as :meth:`OriginalStore.fetch` finds it (the same identity), its bytes
        read from ``source``, a copy the caller holds (an upload): nothing is read back.
        ``etag`` is what :meth:`write` answered, where it did."""


@dataclass(frozen=True, slots=True)
class Located:
    """Where an id's original is and what it is, for streaming it whole or in part."""

    key: str  # the store key, extension included
    size: int
    etag: str  # a strong validator, quoted: it changes when the bytes do
    mtime: float | None = None


@runtime_checkable
class Checked(Protocol):
    """A store with a readiness check of its own beyond a read (a local folder exists)."""

    async def check(self) -> None: ...


@runtime_checkable
class WriteChecked(Protocol):
    """A store that can say, without a request, whether it can take writes now."""

    async def check_writes(self) -> None: ...


@runtime_checkable
class Downloads(Protocol):
    """Originals streamed to clients as they are (``GET /o/``): local, S3, HTTP
    (``isinstance(store, Downloads)`` says whether a store is one)."""

    async def locate(self, id: str) -> Located:
        """The original for ``id``, whatever its size; raises NotFound."""

    def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """Bytes ``start..end`` (inclusive; ``None``: to the end) of ``key`` in chunks, never all at once."""


class VariantStore(Protocol):
    async def get(self, key: str) -> Blob | None: ...

    async def exists(self, key: str) -> bool: ...

    def list(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        """``(key, size)`` of every variant below ``prefix`` (leases and locks excluded)."""

    async def delete(self, key: str) -> bool:
        """Remove a variant; False if it was not there."""

    def folders(self, prefix: str = "") -> AsyncIterator[str]:
        """Names of the folders right below ``prefix`` (``""`` or ending in ``/``);
        dot-folders (leases, locks) excluded."""

    async def put(self, key: str, blob: Blob, metadata: Mapping[str, str]) -> bool:
        """Store atomically, never overwriting; False if it was already there."""

    def lease(self, key: str) -> AbstractAsyncContextManager[Blob | None]:
        """Exclusive right to render ``key`` across processes and machines.

        Yields the variant if another holder stored it while we waited (then
        there is nothing to render), else None while the lease is ours.
        """

    async def aclose(self) -> None: ...


def id_of(key: str) -> str:
    """The id an original's store key serves: the key without a known extension."""
    stem, dot, ext = key.rpartition(".")
    return stem if dot and stem and ext.lower() in ORIGINAL_EXTENSIONS else key


def extension_keys(key: str) -> tuple[str, ...]:
    """``key.jpg``, ``key.JPG``, ...: where an original may be stored when ``key`` itself is not."""
    return tuple(key + suffix for suffix in _SUFFIXES)


def first_key(key: str, existing: Collection[str]) -> str | None:
    """The one of ``key``'s :func:`extension_keys` in ``existing`` that the id means:
    the first in that fixed order, so every process picks the same. Several are
    logged once per id: an upload never makes a second one, a copy or a race may."""
    found = [k for k in extension_keys(key) if k in existing]
    if len(found) > 1 and key not in _warned:
        if len(_warned) >= 10_000:
            _warned.clear()
        _warned.add(key)
        log.warning("original %s is stored under %d keys (%s); serving %s", key, len(found),
                    ", ".join(found), found[0])
    return found[0] if found else None


def file_path(url: str) -> str:
    """``file:///abs`` or ``file://./relative`` to a filesystem path."""
    parts = urlsplit(url)
    return f".{parts.path}" if parts.netloc == "." else parts.path


@contextmanager
def download_deadline(seconds: float) -> Iterator[None]:
    """Fetching one original (every request it takes) within ``download_timeout``."""
    try:
        with anyio.fail_after(seconds):
            yield
    except TimeoutError:
        raise GatewayTimeout(f"downloading the original took over {seconds:g}s",
                             limit="download_timeout") from None

