"""``imgproxy copy SRC DST [--prefix P]``: originals from one store to another.

Streamed: a local file is read in 1 MiB chunks; an S3 object up to 8 MiB is
one PUT, anything larger a multipart upload of 8 MiB parts, so a copy holds a
part or two per concurrent copy in memory whatever the file's size.

Idempotent: an object already at the destination is skipped when it is
*identical*, meaning the same size and the same S3 ETag. That ETag is the MD5
of the bytes for an object stored in one part, and for a multipart upload the
MD5 of its parts' MD5s followed by ``-<parts>``. A local file keeps no hash, so
its ETag is computed by reading it, in the layout of the other side's ETag
(one part, or 8 MiB parts: ours, and the AWS CLI's default). Reading happens
only where it must:

- local and local: both files are read and their MD5s compared;
- local and S3: only the local file is read;
- S3 and S3: equal ETags, or two different one-part MD5s, decide without
  reading; ETags of different layouts (one PUT against a multipart upload)
  read the source once to compute its ETag in the destination's layout;
- an S3 ETag of parts that are not 8 MiB cannot be reproduced: the object is
  copied again.

Every copy is checked: the bytes read must match the source's size, and an S3
destination's ETag must match the ETag of the bytes sent.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator
from contextlib import aclosing
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import anyio

from ...batch.progress import Progress, each
from ...config import load_settings
from ...errors import ImgproxyError, NotFound, Unavailable
from ...stores import ObjectStat, OriginalFiles
from ...stores.s3 import PART_SIZE
from ...variants.services import ORIGINAL_STORES, open_store
from .common import clients, emit, size


class Etag:
    """S3's ETag of a byte stream: the MD5 of the bytes (``part`` 0), or the ETag of
    a multipart upload of ``part``-byte parts."""

    def __init__(self, part: int) -> None:
        self.part = part
        self.size = 0
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._parts: list[bytes] = []
        self._filled = 0

    def update(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if not self.part:
            self._md5.update(chunk)
            return
        view = memoryview(chunk)
        while view:
            piece, view = view[: self.part - self._filled], view[self.part - self._filled:]
            self._md5.update(piece)
            self._filled += len(piece)
            if self._filled == self.part:
                self._parts.append(self._md5.digest())
                self._md5, self._filled = hashlib.md5(usedforsecurity=False), 0

    def hexdigest(self) -> str:
        if not self.part:
            return self._md5.hexdigest()
        parts = self._parts + ([self._md5.digest()] if self._filled or not self._parts else [])
        return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"

    async def tee(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.update(chunk)
            yield chunk


def layout(etag: str, size: int) -> int | None:
    """The part size ``etag`` was made with: 0 for one part, :data:`PART_SIZE` when
    its part count fits 8 MiB parts; None when we cannot reproduce it."""
    if "-" not in etag:
        return 0
    count = etag.rpartition("-")[2]
    return PART_SIZE if count.isdigit() and int(count) == max(1, -(-size // PART_SIZE)) else None


def write_layout(size: int) -> int:
    """How an S3 store writes ``size`` bytes (stores.s3.S3Originals.write)."""
    return PART_SIZE if size > PART_SIZE else 0


async def etag_of(chunks: AsyncGenerator[bytes, None], part: int) -> str:
    etag = Etag(part)
    async with aclosing(chunks):
        async for chunk in chunks:
            etag.update(chunk)
    return etag.hexdigest()


async def identical(src: OriginalFiles, dst: OriginalFiles, key: str, s: ObjectStat, d: ObjectStat | None) -> bool:
    """Whether ``dst`` already holds ``src``'s ``key`` (see the module docstring)."""
    if d is None or d.size != s.size:
        return False
    if s.etag is not None and d.etag is not None:
        if s.etag == d.etag:
            return True
        if "-" not in s.etag and "-" not in d.etag:
            return False  # two MD5s of the bytes
    if d.etag is not None and (part := layout(d.etag, d.size)) is not None:
        return await etag_of(src.read(key), part) == d.etag
    if s.etag is not None and (part := layout(s.etag, s.size)) is not None:
        return await etag_of(dst.read(key), part) == s.etag
    if s.etag is None and d.etag is None:
        return await etag_of(src.read(key), 0) == await etag_of(dst.read(key), 0)
    return False


@dataclass
class Summary:
    copied: int = 0
    skipped: int = 0
    failed: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failures: dict[str, str] = field(default_factory=dict)  # key -> why

    def figures(self) -> list[str]:
        return [f"copied {self.copied} ({size(self.bytes)})", f"skipped {self.skipped}", f"failed {self.failed}"]


async def copy_one(src: OriginalFiles, dst: OriginalFiles, key: str) -> int | None:
    """Copy ``key``; the bytes copied, or None when ``dst`` already had it."""
    s = await src.stat(key)
    if s is None:
        raise NotFound("gone from the source since it was listed")
    if await identical(src, dst, key, s, await dst.stat(key)):
        return None
    sent = Etag(write_layout(s.size))
    async with aclosing(src.read(key)) as chunks:
        stored = await dst.write(key, sent.tee(chunks), s.size)
    if sent.size != s.size:
        raise Unavailable(f"read {sent.size} bytes of {s.size}: the original changed while copying")
    if stored is not None and stored != sent.hexdigest():
        raise Unavailable(f"the destination's ETag {stored} is not that of the bytes sent ({sent.hexdigest()})")
    return s.size


async def copy(src: OriginalFiles, dst: OriginalFiles, prefix: str = "", concurrency: int = 8) -> Summary:
    started = time.monotonic()
    keys = [key async for key in src.list_keys(prefix)]
    summary = Summary()
    with Progress("copy", len(keys), "keys") as bar:

        async def one(key: str) -> None:
            try:
                copied = await copy_one(src, dst, key)
            except (ImgproxyError, OSError) as exc:
                summary.failed += 1
                summary.failures[key] = str(exc)
            else:
                if copied is None:
                    summary.skipped += 1
                else:
                    summary.copied += 1
                    summary.bytes += copied
            bar.advance(summary.figures())

        await each(keys, one, concurrency)
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def _files(store: Any, url: str) -> OriginalFiles:
    if not isinstance(store, OriginalFiles):
        raise Unavailable(f"{url}: only file:// and s3:// stores can be copied from or to")
    return store


async def _run(args: argparse.Namespace) -> Summary:
    settings = load_settings()
    for url in (args.src, args.dst):
        if urlsplit(url).scheme not in ORIGINAL_STORES:
            raise Unavailable(f"{url}: not a store URL (file:///path, file://./path or s3://bucket/prefix)")
    async with clients(settings) as shared:
        src = _files(await open_store(ORIGINAL_STORES, args.src, settings, shared), args.src)
        dst = _files(await open_store(ORIGINAL_STORES, args.dst, settings, shared), args.dst)
        return await copy(src, dst, args.prefix, args.concurrency)


def run(args: argparse.Namespace) -> int:
    summary = anyio.run(_run, args)
    rate = summary.bytes / summary.seconds if summary.seconds else 0.0
    lines = [f"{', '.join(summary.figures())} in {summary.seconds:.1f} s ({size(rate)}/s)"]
    lines += [f"  failed {key}: {why}" for key, why in sorted(summary.failures.items())]
    emit(asdict(summary), args.json, lines)
    return 1 if summary.failed else 0

