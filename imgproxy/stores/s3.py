"""S3 stores (aioboto3): ``s3://bucket/prefix`` for originals and variants.

One client per process comes from :class:`imgproxy.stores.clients.Clients`;
its errors are mapped where they enter by :func:`.s3errors.mapped`.
Originals are streamed to a spool file (:mod:`.spool`) with a byte cap; variants are written with
``If-None-Match: *`` so a stored variant is never overwritten.
"""

from __future__ import annotations

import asyncio
import hashlib
import mimetypes
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import anyio
from botocore.exceptions import ClientError
from cachetools import LRUCache

from ..caching import IMMUTABLE
from ..errors import Conflict, ImgproxyError, NotFound, TooLarge
from ..formats import mime_of
from ..render import Source
from . import Blob, Located, ObjectStat, Original, download_deadline, extension_keys, first_key
from .s3errors import lost_race, mapped
from .s3lease import S3Lease
from .spool import Spool

if TYPE_CHECKING:
    from ..config import Settings
    from .clients import Clients

_CHUNK = 256 * 1024
#: Objects larger than this are written in multipart uploads of parts this size
#: (the AWS CLI's default too, so its ETags can be reproduced: see imgproxy.cli.ops.copy).
PART_SIZE = 8 * 1024 * 1024
#: S3 user metadata is ASCII and at most 2 KB in all; we write two values.
_METADATA_VALUE_MAX = 512
_METADATA_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) != "%")


def metadata_value(value: str) -> str:
    """``value`` as S3 takes it: non-ASCII, spaces and ``%`` percent-escaped
    (UTF-8), and a SHA-256 in place of anything still over 512 characters.

    The ``source`` metadata carries an origin's ETag, which is anyone's bytes.
    """
    escaped = quote(value, safe=_METADATA_SAFE, errors="surrogateescape")
    if len(escaped) <= _METADATA_VALUE_MAX:
        return escaped
    return "sha256:" + hashlib.sha256(escaped.encode("ascii")).hexdigest()


def parse_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` to ``("bucket", "some/prefix/")``."""
    parts = urlsplit(url.strip())
    prefix = parts.path.strip("/")
    return parts.netloc, f"{prefix}/" if prefix else ""


class S3Originals:
    #: Keys per listing page when resolving an id (S3's maximum; tests lower it).
    page = 1000

    def __init__(self, client: Any, url: str, max_bytes: int, timeout: float, spool: Spool) -> None:
        self.client = client
        self.spool = spool
        self.bucket, self.prefix = parse_url(url)
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._keys: LRUCache[str, str] = LRUCache(maxsize=10_000)  # id -> key it resolved to

    @classmethod
    async def open(cls, url: str, settings: Settings, clients: Clients) -> S3Originals:
        return cls(await clients.s3(), url, settings.max_source_bytes, settings.download_timeout,
                   clients.spool())

    async def fetch(self, id: str) -> Original:
        with download_deadline(self.timeout):
            return await self._fetch(id)

    async def _fetch(self, id: str) -> Original:
        key = self._keys.get(id)
        if key is not None:
            try:
                return await self._get(key)
            except NotFound:
                del self._keys[id]  # replaced under another extension: resolve again
        try:
            original = await self._get(f"{self.prefix}{id}")
        except NotFound:
            original = await self._get(await self._resolve(id))
        self._keys[id] = original.key
        return original

    async def _resolve(self, id: str) -> str:
        """The first of ``<id>``'s extension keys that exists (:func:`.first_key`).

        One listing of ``<id>.`` with a ``/`` delimiter, so keys in folders beside
        it (``<id>.a/…``) count once; should that page still be full, one HEAD per
        candidate instead: never an unbounded listing."""
        base = f"{self.prefix}{id}"
        with mapped("list", origin=True):
            listing = await self.client.list_objects_v2(Bucket=self.bucket, Prefix=f"{base}.", Delimiter="/",
                                                        MaxKeys=self.page)
        if listing.get("IsTruncated"):
            existing = await self._existing(extension_keys(base))
        else:
            existing = {obj["Key"] for obj in listing.get("Contents", ())}
        key = first_key(base, existing)
        if key is None:
            raise NotFound("no such original")
        return key

    async def _existing(self, keys: tuple[str, ...]) -> set[str]:
        """Those of ``keys`` that exist, by one HEAD each (concurrent, within the client's pool)."""
        answers = await asyncio.gather(*(self._head(key) for key in keys), return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer  # the first store error, mapped; every HEAD has finished
        return {key for key, there in zip(keys, answers, strict=True) if there}

    async def _head(self, key: str) -> bool:
        try:
            with mapped("head", origin=True):
                await self.client.head_object(Bucket=self.bucket, Key=key)
        except NotFound:
            return False
        return True

    async def _get(self, key: str) -> Original:
        with mapped("get", origin=True):
            obj = await self.client.get_object(Bucket=self.bucket, Key=key)
            if obj.get("ContentLength", 0) > self.max_bytes:
                async with obj["Body"]:  # closes the connection unread
                    pass
                raise TooLarge(f"original is {obj['ContentLength']} bytes; the limit is {self.max_bytes}",
                               limit="max_source_bytes")
            async with obj["Body"]:  # releases the connection, read or not
                spooled = await self.spool.receive(obj["Body"].iter_chunks(_CHUNK), self.max_bytes,
                                                   obj.get("ContentLength"))
        return Original(key, f"s3://{self.bucket}/{key}:{obj.get('ETag', '')}", Source(path=spooled.path), spooled)

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        async for key, _ in list_objects(self.client, self.bucket, self.prefix, prefix):
            yield key

    # Whole objects by key, for ``imgproxy copy`` (stores.OriginalFiles).

    async def stat(self, key: str) -> ObjectStat | None:
        try:
            with mapped("head", origin=True):
                head = await self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except NotFound:
            return None
        return ObjectStat(int(head["ContentLength"]), str(head["ETag"]).strip('"'),
                          head.get("Metadata", {}).get("sha256"))

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        span = {} if start == 0 and end is None else {"Range": f"bytes={start}-{'' if end is None else end}"}
        with mapped("get", origin=True):
            obj = await self.client.get_object(Bucket=self.bucket, Key=self.prefix + key, **span)
            async with obj["Body"]:
                async for chunk in obj["Body"].iter_chunks(_CHUNK):
                    yield chunk

    async def locate(self, id: str) -> Located:
        """The object ``<prefix><id>``, else ``<prefix><id>.<ext>``; one HEAD when the id is known."""
        key = self._keys.get(id) or f"{self.prefix}{id}"
        for attempt in range(2):
            try:
                with mapped("head", origin=True):
                    head = await self.client.head_object(Bucket=self.bucket, Key=key)
            except NotFound:
                if attempt:
                    raise
                key = await self._resolve(id)
                continue
            self._keys[id] = key
            mtime = head.get("LastModified")
            return Located(key[len(self.prefix):], int(head["ContentLength"]), str(head["ETag"]),
                           mtime.timestamp() if mtime is not None else None)
        raise NotFound("no such original")

    async def write(self, key: str, chunks: AsyncIterable[bytes], size: int, *,
                    sha256: str | None = None, exclusive: bool = False) -> str | None:
        """One PUT up to :data:`PART_SIZE`, else a multipart upload of such parts
        (aborted on any failure, so no half object is ever visible). The hash is
        the object's ``sha256`` metadata; ``exclusive`` writes with
        ``If-None-Match: *`` (the PUT, or the multipart upload's completion)."""
        target: dict[str, Any] = {"Bucket": self.bucket, "Key": self.prefix + key}
        kind = mimetypes.guess_type(key)[0] or "application/octet-stream"
        meta = {"Metadata": {"sha256": sha256}} if sha256 is not None else {}
        condition = {"IfNoneMatch": "*"} if exclusive else {}
        parts = _parts(chunks, PART_SIZE)
        if size <= PART_SIZE:
            body = b"".join([part async for part in parts])
            with mapped("put"), _refused_if_exists(key):
                sent = await self.client.put_object(**target, Body=body, ContentType=kind, **meta, **condition)
            return str(sent["ETag"]).strip('"')
        with mapped("put"):
            upload = (await self.client.create_multipart_upload(**target, ContentType=kind, **meta))["UploadId"]
        try:
            done: list[dict[str, object]] = []
            async for part in parts:
                with mapped("put"):
                    sent = await self.client.upload_part(**target, UploadId=upload, PartNumber=len(done) + 1,
                                                         Body=part)
                done.append({"PartNumber": len(done) + 1, "ETag": sent["ETag"]})
            with mapped("put"), _refused_if_exists(key):
                result = await self.client.complete_multipart_upload(**target, UploadId=upload,
                                                                     MultipartUpload={"Parts": done}, **condition)
        except BaseException:
            with anyio.CancelScope(shield=True):  # abort even when cancelled
                try:
                    with mapped("put"):
                        await self.client.abort_multipart_upload(**target, UploadId=upload)
                except ImgproxyError:
                    pass  # logged; the bucket's lifecycle rule for incomplete uploads cleans up
            raise
        return str(result["ETag"]).strip('"')

    async def find_key(self, id: str) -> str | None:
        """The key (below the prefix) ``id`` is stored under, or None: a HEAD, then a listing."""
        if await self.stat(id) is not None:
            return id
        try:
            return (await self._resolve(id))[len(self.prefix):]
        except NotFound:
            return None

    async def written(self, key: str, source: Source, etag: str | None = None) -> Original:
        if etag is None:
            with mapped("head", origin=True):
                head = await self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
            etag = str(head["ETag"]).strip('"')
        return Original(self.prefix + key, f's3://{self.bucket}/{self.prefix}{key}:"{etag}"', source)

    async def delete(self, key: str) -> bool:
        if await self.stat(key) is None:
            return False
        with mapped("delete"):
            await self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        return True

    async def aclose(self) -> None:
        pass  # the client belongs to the lifespan


@contextmanager
def _refused_if_exists(key: str) -> Iterator[None]:
    """A lost ``If-None-Match: *`` write: the key exists (or is being written)."""
    try:
        yield
    except ClientError as exc:
        if lost_race(exc):
            raise Conflict(f"{key} exists") from None
        raise


async def _parts(chunks: AsyncIterable[bytes], size: int) -> AsyncIterator[bytes]:
    """``chunks`` regrouped into parts of ``size`` bytes (the last one shorter)."""
    pending: list[bytes] = []
    filled = 0
    async for chunk in chunks:
        rest = chunk
        while filled + len(rest) >= size:  # complete a part: one copy of its bytes
            cut = size - filled
            pending.append(rest[:cut])
            yield b"".join(pending)
            pending, filled, rest = [], 0, rest[cut:]
        if rest:
            pending.append(rest)
            filled += len(rest)
    if pending:
        yield b"".join(pending)


async def list_objects(client: Any, bucket: str, root: str, prefix: str) -> AsyncIterator[tuple[str, int]]:
    """``(key below root, size)`` of every object under ``root + prefix``, page by page;
    keys in dot-folders (``.leases/``) are not listed."""
    paginator = client.get_paginator("list_objects_v2")
    pages = paginator.paginate(Bucket=bucket, Prefix=root + prefix).__aiter__()
    while True:
        with mapped("list"):  # each page is one request: map its errors where they enter
            try:
                page = await pages.__anext__()
            except StopAsyncIteration:
                return
        for obj in page.get("Contents", ()):
            key = obj["Key"][len(root):]
            if not any(part.startswith(".") for part in key.split("/")):
                yield key, int(obj.get("Size", 0))


class S3Variants:
    def __init__(self, client: Any, url: str, lease_seconds: float, deadline: float | None = None) -> None:
        self.client = client
        self.bucket, self.prefix = parse_url(url)
        self.deadline = deadline  # per call, retries included (see s3errors)
        self.leases = S3Lease(client, self.bucket, f"{self.prefix}.leases/", lease_seconds, deadline)

    @classmethod
    async def open(cls, url: str, settings: Settings, clients: Clients) -> S3Variants:
        return cls(await clients.s3(), url, settings.s3_lease_seconds,
                   settings.s3_timeout * settings.s3_max_attempts)

    async def get(self, key: str) -> Blob | None:
        try:
            with mapped("get", deadline=self.deadline):
                obj = await self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)
                body = await obj["Body"].read()
        except NotFound:
            return None
        return Blob.of(body, obj["LastModified"].timestamp())

    async def exists(self, key: str) -> bool:
        try:
            with mapped("head", deadline=self.deadline):
                await self.client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except NotFound:
            return False
        return True

    async def put(self, key: str, blob: Blob, metadata: Mapping[str, str]) -> bool:
        with mapped("put", deadline=self.deadline):
            try:
                await self.client.put_object(
                    Bucket=self.bucket,
                    Key=self.prefix + key,
                    Body=blob.body,
                    ContentType=mime_of(key),
                    CacheControl=IMMUTABLE,  # for a CDN that serves the bucket directly
                    Metadata={name: metadata_value(value) for name, value in metadata.items()},
                    IfNoneMatch="*",  # never overwrite: a duplicate render loses here
                )
            except ClientError as exc:
                if lost_race(exc):
                    return False
                raise
        return True

    @asynccontextmanager
    async def lease(self, key: str) -> AsyncIterator[Blob | None]:
        async with self.leases.hold(key, self.get, self.exists) as stored:
            yield stored

    async def list(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        async for entry in list_objects(self.client, self.bucket, self.prefix, prefix):
            yield entry

    async def delete(self, key: str) -> bool:
        if not await self.exists(key):
            return False
        with mapped("delete", deadline=self.deadline):
            await self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)
        return True

    async def folders(self, prefix: str = "") -> AsyncIterator[str]:
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix, Delimiter="/").__aiter__()
        while True:
            with mapped("list"):
                try:
                    page = await pages.__anext__()
                except StopAsyncIteration:
                    return
            for common in page.get("CommonPrefixes", ()):
                name = common["Prefix"][len(self.prefix + prefix):].rstrip("/")
                if name and not name.startswith("."):
                    yield name

    async def aclose(self) -> None:
        pass
