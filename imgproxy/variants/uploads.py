"""Ingest: an upload validated without decoding pixels, stored once, rendered once.

    chunks ──the spool (byte cap, budget, sha256, sniff)────> 413 / 503 / 507 / 415 / 400
      └─ ProbeJob in a capped worker: header only ──────────> 413 pixels, frames / 422
           └─ the id is new ─────────── store exclusively ──> 201 created
              holds these bytes ──────── nothing to do ─────> 200 unchanged
              holds other bytes ──────── 409, or with replace: a new version id, 201
                └─ eager renders: one fan-out job (one decode) from the upload's own
                   spool file (the store is not read back), awaited or in the background

The HTTP endpoint (:mod:`imgproxy.web.uploads`) and ``imgproxy put`` both call
:meth:`Ingest.put`, so an upload is checked the same way whichever door it
came through. Nothing is stored until every check has passed, and the store
write is atomic, so a refused, short or abandoned upload leaves nothing.

**An id never changes meaning.** A variant URL names an id, and CDNs keep a
variant for a year, so an id whose bytes changed would keep serving the old
ones under a URL that now means the new ones. So an id's original is written
once (exclusively: of two racing uploads one wins, the other is compared
with it), and ``replace`` stores the new bytes under a *new* id,
``<id>.v<first 12 hex digits of their sha256>`` (a version suffix already on
the id is swapped, not stacked), leaving the old id and its variants as they
were. Every URL keeps meaning the bytes it always meant.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import AsyncIterable, AsyncIterator, Collection, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import anyio

from ..errors import BadRequest, Conflict, ImgproxyError, MethodNotAllowed, NotFound, TooLarge, Unsupported
from ..render import Probed, ProbeJob, Source
from ..render.sniff import HEAD, sniff
from ..stores import OriginalFiles, id_of
from ..stores.spool import Spool
from ..urls import check_id, variant_url
from .fanout import FanOut, Target, targets_of
from .services import Services, limits

log = logging.getLogger("imgproxy.ingest")  # the name log filters already use

_READ = 1024 * 1024
_VERSION = re.compile(r"\.v[0-9a-f]{12}$")


@dataclass(frozen=True)
class Spooled:
    path: Path
    size: int
    sha256: str
    kind: str  # the input format, by its bytes (render/sniff.py)


def _format_of(head: bytes, allowed: Collection[str]) -> str:
    """The upload's input format by its first bytes; 415 for anything we do not read."""
    fmt = sniff(head)
    if fmt is None or (allowed and fmt not in allowed):
        raise Unsupported("the upload is not in a format this server reads")
    return fmt


@asynccontextmanager
async def spooled(spool: Spool, chunks: AsyncIterable[bytes], max_bytes: int, declared: int | None = None,
                  allowed: Collection[str] = ()) -> AsyncIterator[Spooled]:
    """The upload in a spool file (removed on exit), hashed and sniffed as it streams.

    The spool is the one fetched originals wait in (its folder, its byte
    budget: 503 past it; a full folder 507, an unwritable one 503). 413 as
    soon as ``declared`` (Content-Length) or the bytes received pass
    ``max_bytes``; 415 as soon as the first bytes are not an image we read;
    400 when the body ends short of ``declared``. Memory holds one chunk.
    """
    if declared is not None and declared > max_bytes:
        raise _too_large(max_bytes)
    seen = _Seen(allowed)
    held = await spool.receive(seen.passing(chunks), max_bytes, declared, storing=True)
    try:
        if declared is not None and held.size != declared:
            raise BadRequest(f"the body ended after {held.size} of its {declared} bytes")
        if held.size == 0:
            raise BadRequest("the body is empty")
        yield Spooled(Path(held.path), held.size, seen.digest.hexdigest(), seen.kind or _format_of(seen.head, allowed))
    finally:
        held.close()  # not awaited: this runs when the upload is cancelled too


class _Seen:
    """The sha256 and the format of the chunks that pass through :meth:`passing`."""

    def __init__(self, allowed: Collection[str]) -> None:
        self.allowed = allowed
        self.digest = hashlib.sha256()
        self.head = b""
        self.kind: str | None = None

    async def passing(self, chunks: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
        async for chunk in chunks:
            self.digest.update(chunk)
            if self.kind is None:
                self.head += chunk[:HEAD - len(self.head)]
                if len(self.head) >= HEAD:
                    self.kind = _format_of(self.head, self.allowed)  # 415 before the rest of the body is read
            yield chunk


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"the upload is over the limit of {limit} bytes", limit="max_source_bytes")


@dataclass
class Stored:
    id: str
    key: str
    status: str  # created, unchanged (these bytes were there already), replaced
    etag: str | None = None  # what the store answered for our write, where it does


class Ingest:
    """Uploads into the originals store, with eager renders through :meth:`VariantService.fan_out`."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.settings = services.settings
        if not isinstance(services.originals, OriginalFiles):
            raise MethodNotAllowed("this originals store cannot be written to (an HTTP origin)")
        self.files: OriginalFiles = services.originals
        self.spool = services.clients.spool()  # made now: a spool folder smaller than its budget is said at start-up
        self.tasks: set[asyncio.Task[FanOut | None]] = set()

    def targets(self, names: Sequence[str] | None) -> list[Target]:
        """Eager renders: ``names`` (None: the configured list) x the configured formats."""
        chosen = self.settings.ingest_render_list if names is None else names
        try:
            return targets_of(self.services.presets, chosen, self.settings.warm_formats_list)
        except NotFound as exc:
            raise BadRequest(exc.detail) from None

    async def put(self, id: str, chunks: AsyncIterable[bytes], *, declared: int | None = None,
                  replace: bool = False, render: Sequence[str] | None = None, wait: bool = False,
                  base_url: str = "") -> tuple[int, dict[str, Any]]:
        """Validate, store and render one upload; the HTTP status and the JSON body."""
        check_id(id)
        targets = self.targets(render)
        async with AsyncExitStack() as held:  # the spool file, until the renders are done or handed off
            upload = await held.enter_async_context(spooled(self.spool, chunks, self.settings.max_source_bytes,
                                                            declared, allowed=self.settings.input_formats))
            info = await self.probe(upload)
            stored = await self.store(id, upload, replace)
            body: dict[str, Any] = {
                "id": stored.id, "status": stored.status, "key": stored.key, "bytes": upload.size,
                "width": info["width"], "height": info["height"], "frames": info["frames"],
                "format": upload.kind, "sha256": upload.sha256,
            }
            if stored.id != id:
                body["replaces"] = id
            body["render"] = await self.render(stored, upload, targets, wait, held)
        body["urls"] = self.urls(stored.id, base_url)
        return (200 if stored.status == "unchanged" else 201), body

    async def probe(self, upload: Spooled) -> dict[str, Any]:
        """The header, read in a capped worker: 413 over the pixel or frame limits, 422 if unreadable."""
        renderer = self.services.renderer
        job = ProbeJob(Source(path=str(upload.path)), limits(self.settings))
        with renderer.admit():
            probed = cast(Probed, await renderer.run(job))
        frames = int(probed.info.get("frames", 1))
        if frames > self.settings.max_frames:
            raise TooLarge(f"the upload has {frames} frames; the limit is {self.settings.max_frames}",
                           limit="max_frames")
        return probed.info

    async def store(self, id: str, upload: Spooled, replace: bool) -> Stored:
        try:
            return await self._place(id, upload, "created")
        except Conflict as exc:
            if not replace:
                raise Conflict(f"{exc.detail}; ?replace=1 stores these under a new id") from None
        return await self._place(check_id(_VERSION.sub("", id) + ".v" + upload.sha256[:12]), upload, "replaced")

    async def _place(self, id: str, upload: Spooled, status: str) -> Stored:
        """``id`` stored, unless it already means other bytes (409). It does when
        it resolves to a key, or when its own key would be one that an existing
        id resolves by (``y.jpg`` beside ``y.png`` gives ``y`` a second key)."""
        own = await self.files.find_key(id)
        if own is not None:
            if await self._same(own, upload):
                return Stored(id, own, "unchanged")
            raise Conflict(f"{id} holds other bytes")
        stem = id_of(id)
        held = await self.files.find_key(stem) if stem != id else None
        if held is not None and not await self._same(held, upload):
            raise Conflict(f"{id} would give {stem} a second meaning: {held} holds other bytes")
        return await self._write(id, upload, status)

    async def _write(self, id: str, upload: Spooled, status: str) -> Stored:
        """Exclusively under the key ``<id>``, the first key an id resolves to: of two
        racing uploads one is stored, the other compared with it."""
        try:
            etag = await self.files.write(id, _read(upload.path), upload.size, sha256=upload.sha256, exclusive=True)
        except Conflict:
            if await self._same(id, upload):
                return Stored(id, id, "unchanged")
            raise Conflict(f"{id} holds other bytes") from None
        log.info("stored %s (%d bytes, %s, sha256 %s)", id, upload.size, upload.kind, upload.sha256)
        return Stored(id, id, status, etag)

    async def _same(self, key: str, upload: Spooled) -> bool:
        stat = await self.files.stat(key)
        if stat is None or stat.size != upload.size:
            return False
        if stat.sha256 is not None:
            return stat.sha256 == upload.sha256
        digest = hashlib.sha256()  # an original that came in another way: hash it
        async for chunk in self.files.read(key):
            digest.update(chunk)
        return digest.hexdigest() == upload.sha256

    async def render(self, stored: Stored, upload: Spooled, targets: Sequence[Target], wait: bool,
                     held: AsyncExitStack) -> dict[str, Any]:
        """The eager renders; in the background, ``held`` (the spool file) goes with them."""
        presets = list(dict.fromkeys(preset.name for preset, _ in targets))
        formats = list(dict.fromkeys(fmt for _, fmt in targets))
        out: dict[str, Any] = {"presets": presets, "formats": formats}
        if not targets:
            return {**out, "state": "none"}
        if not wait:
            task = asyncio.create_task(self._background(stored, upload, targets, held.pop_all()))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            return {**out, "state": "queued"}
        try:
            done = await self._fan_out(stored, upload, targets)
        except ImgproxyError as exc:
            return {**out, "state": "failed", "error": exc.error, "detail": exc.detail}
        return {**out, "state": "done", "rendered": len(done.rendered), "skipped": len(done.skipped),
                "failed": {key: exc.error for key, exc in done.failed.items()}}

    async def _fan_out(self, stored: Stored, upload: Spooled, targets: Sequence[Target]) -> FanOut:
        """One fan-out from the upload's own bytes: the store is not read back."""
        original = await self.files.written(stored.key, Source(path=str(upload.path)), stored.etag)
        return await self.services.variants.fan_out(stored.id, targets, original)

    async def _background(self, stored: Stored, upload: Spooled, targets: Sequence[Target],
                          held: AsyncExitStack) -> FanOut | None:
        async with held:  # the upload's spool file, removed when its renders are done
            try:
                done = await self._fan_out(stored, upload, targets)
            except ImgproxyError as exc:
                log.warning("eager renders of %s failed: %s", stored.id, exc.detail)
                return None
            except Exception:
                log.exception("eager renders of %s failed (category: bug)", stored.id)
                return None
        if done.failed:
            log.warning("eager renders of %s: %d failed", stored.id, len(done.failed))
        return done

    async def drain(self) -> None:
        """Wait for the background renders (shutdown)."""
        while self.tasks:
            await asyncio.gather(*list(self.tasks), return_exceptions=True)

    def urls(self, id: str, base_url: str) -> dict[str, dict[str, str]]:
        key = self.services.keys[0]
        return {name: {fmt: variant_url(key, name, id, fmt, base_url) for fmt in self.settings.warm_formats_list}
                for name in self.services.presets}


async def _read(path: Path) -> AsyncIterator[bytes]:
    f = await anyio.to_thread.run_sync(open, path, "rb")
    with f:
        while chunk := await anyio.to_thread.run_sync(f.read, _READ):
            yield chunk
