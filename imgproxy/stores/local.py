"""Local-folder stores.

Variants are written atomically (temp file, fsync, link into place) and never
overwrite an existing file. Several processes sharing one folder serialise the
render of a key with an OS file lock (``flock``), which the kernel releases if
the holder dies, so a crash can never wedge a key.

A variant folder that cannot be written (read-only, out of space or inodes,
no permission) degrades to rendering without storing: the lock is skipped,
each failure is logged and counted in ``imgproxy_store_errors_total``, and
:attr:`LocalVariants.degraded` holds the last reason until a write succeeds.
Errors an id's shape causes (a segment too long, a symlink loop, an original
where a folder must be) are 400 and 404, never a 503 that a retry cannot cure.
"""

from __future__ import annotations

import asyncio
import errno
import fcntl
import hashlib
import logging
import os
import secrets
import stat
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import anyio

from ..errors import BadRequest, Conflict, ImgproxyError, NotFound, TooLarge, Unavailable
from ..metrics import LEASES, STORE_ERRORS
from ..render import Source
from . import Blob, Located, ObjectStat, Original, extension_keys, file_path, first_key
from .oserrors import writing

if TYPE_CHECKING:
    from ..config import Settings
    from .clients import Clients

log = logging.getLogger("imgproxy.stores")
_CHUNK = 1024 * 1024
#: Variants up to this size are read on the event loop, larger ones in a thread.
_INLINE_READ = 1024 * 1024
#: Variant ETags remembered per process; cleared whole when full (cheaper than an LRU).
ETAGS = 65536
#: The longest name an original is written under: room for its ``.<name>.sha256`` (NAME_MAX is 255).
MAX_NAME = 255 - len("..sha256")


def _os_error(exc: OSError, store: str) -> ImgproxyError:
    """An OSError to our error: the id's fault (400/404), else the store's (503)."""
    if exc.errno == errno.ENAMETOOLONG:
        return BadRequest("a segment of the id is too long")
    if exc.errno == errno.ELOOP:
        return NotFound("no such original" if store == "originals" else "no such variant")
    return Unavailable(f"{store} store error: {exc.strerror}")


def _inside(root: Path, id: str) -> Path:
    """``root/id``, refusing anything (symlinks included) that resolves outside root."""
    path = (root / id).resolve()
    if path != root and root not in path.parents:
        raise NotFound("no such original")
    return path


class LocalOriginals:
    def __init__(self, root: str, max_bytes: int) -> None:
        self.root = Path(root).resolve()
        self.max_bytes = max_bytes

    @classmethod
    async def open(cls, url: str, settings: Settings, clients: Clients) -> LocalOriginals:
        return cls(file_path(url), settings.max_source_bytes)

    def _lookup(self, id: str) -> tuple[str, os.stat_result] | None:
        """The key ``id`` is stored under and its stat, or None: ``<id>`` itself, else
        the first of its extension keys (:func:`.first_key`, the order every store uses)."""
        found = self._regular(id)
        if found is not None:
            return id, found
        stats = {key: st for key in extension_keys(id) if (st := self._regular(key)) is not None}
        key = first_key(id, stats)
        return (key, stats[key]) if key is not None else None

    def _regular(self, key: str) -> os.stat_result | None:
        """The stat of ``root/key`` if it is a file (a folder is no original)."""
        try:
            st = (self.root / key).stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _os_error(exc, "originals") from None
        return st if stat.S_ISREG(st.st_mode) else None

    def _existing(self, id: str) -> tuple[str, Path, os.stat_result]:
        """The key, path (inside the root) and stat of ``id``'s original; 404 if none."""
        found = self._lookup(id)
        if found is None:
            raise NotFound("no such original")
        key, st = found
        return key, _inside(self.root, key), st

    def _find(self, id: str) -> Original:
        key, path, st = self._existing(id)
        if st.st_size > self.max_bytes:
            raise TooLarge(f"original is {st.st_size} bytes; the limit is {self.max_bytes}",
                           limit="max_source_bytes")
        return Original(key, f"{key}:{st.st_size}:{st.st_mtime_ns}", Source(path=str(path)))

    async def fetch(self, id: str) -> Original:
        return await anyio.to_thread.run_sync(self._find, id)

    async def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        for key, _ in await anyio.to_thread.run_sync(_walk, self.root, prefix):
            yield key

    # Whole objects by key, for ``imgproxy copy`` (stores.OriginalFiles).

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            raise BadRequest(f"not a storable key: {key!r}")
        return _inside(self.root, key)

    def _storable(self, key: str) -> Path:
        """Where ``key`` is written; 400, before anything is, for a key no file here
        can have: a name with no room for its side file, a folder (or file) where the other is."""
        path = self._path(key)
        parts = key.split("/")
        if any(len(part.encode()) > MAX_NAME for part in parts):
            raise BadRequest(f"a segment of the id is over {MAX_NAME} characters")
        for n in range(1, len(parts)):
            if self._regular(folder := "/".join(parts[:n])) is not None:
                raise BadRequest(f"{folder} is an original, so it cannot be a folder")
        if path.is_dir():
            raise BadRequest(f"{key} is a folder of originals")
        return path

    async def stat(self, key: str) -> ObjectStat | None:
        try:
            path = self._path(key)
            st = await anyio.to_thread.run_sync(path.stat)
        except (FileNotFoundError, NotADirectoryError, NotFound):
            return None
        except OSError as exc:
            raise _os_error(exc, "originals") from None
        return ObjectStat(st.st_size, None, await anyio.to_thread.run_sync(_recorded_hash, path, st))

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        try:
            f = await anyio.to_thread.run_sync(open, self._path(key), "rb")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            raise NotFound("no such original") from None
        except OSError as exc:
            raise _os_error(exc, "originals") from None
        with f:
            if start:
                f.seek(start)
            left = None if end is None else end - start + 1
            while left is None or left > 0:
                chunk = await anyio.to_thread.run_sync(f.read, _CHUNK if left is None else min(_CHUNK, left))
                if not chunk:
                    break
                if left is not None:
                    left -= len(chunk)
                yield chunk

    def _locate(self, id: str) -> Located:
        key, _, st = self._existing(id)
        tag = hashlib.blake2b(f"{key}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}".encode(), digest_size=12)
        return Located(key, st.st_size, f'"{tag.hexdigest()}"', st.st_mtime)

    async def locate(self, id: str) -> Located:
        return await anyio.to_thread.run_sync(self._locate, id)

    async def write(self, key: str, chunks: AsyncIterable[bytes], size: int, *,
                    sha256: str | None = None, exclusive: bool = False) -> str | None:
        """Temp file in the target folder, fsync, rename over the old file (or,
        ``exclusive``, link into place, which fails if the key exists). The hash
        goes to the dot-file ``.<name>.sha256`` beside it, with the file's size
        and mtime, so a file changed behind our back is never vouched for.

        Both are written in full before either is put in place, so a folder
        that is full (507) or read-only (503, :mod:`.oserrors`) leaves nothing."""
        final = await anyio.to_thread.run_sync(self._storable, key)
        tmp = final.parent / f".tmp-{secrets.token_hex(8)}"
        hashed: Path | None = None  # the hash's temp file
        placed = False
        try:
            with writing("originals", storing=True):
                await anyio.to_thread.run_sync(lambda: final.parent.mkdir(parents=True, exist_ok=True))
                f = await anyio.to_thread.run_sync(open, tmp, "xb")
                with f:
                    async for chunk in chunks:
                        await anyio.to_thread.run_sync(f.write, chunk)
                    await anyio.to_thread.run_sync(_flush, f)
                if sha256 is not None:
                    hashed = await anyio.to_thread.run_sync(_hash_beside, tmp, sha256)
                if exclusive:
                    await anyio.to_thread.run_sync(_link_new, tmp, final)
                    tmp.unlink()
                else:
                    await anyio.to_thread.run_sync(os.replace, tmp, final)
                placed = True
                if hashed is not None:
                    await anyio.to_thread.run_sync(os.replace, hashed, _hash_file(final))
                else:
                    _hash_file(final).unlink(missing_ok=True)
                await anyio.to_thread.run_sync(_fsync_dir, final.parent)
        except BaseException:
            tmp.unlink(missing_ok=True)
            if hashed is not None:
                hashed.unlink(missing_ok=True)
            if placed and exclusive:  # ours alone (the link was exclusive): not left without its hash
                final.unlink(missing_ok=True)
            raise
        return None

    async def check_writes(self) -> None:
        """Unavailable unless an upload could be stored now: the folder is
        writable and has room (readiness, with uploads on)."""
        await anyio.to_thread.run_sync(_check_writable, self.root)

    async def check(self) -> None:
        """Unavailable unless the folder exists and can be listed (readiness)."""
        _check_folder(self.root, "originals", os.R_OK | os.X_OK)

    async def find_key(self, id: str) -> str | None:
        """The key ``id`` is stored under (``<id>`` or ``<id>.<ext>``), or None."""
        return await anyio.to_thread.run_sync(self._key_of, id)

    async def written(self, key: str, source: Source, etag: str | None = None) -> Original:
        st = await anyio.to_thread.run_sync(self._path(key).stat)
        return Original(key, f"{key}:{st.st_size}:{st.st_mtime_ns}", source)

    def _key_of(self, id: str) -> str | None:
        found = self._lookup(id)
        return found[0] if found is not None else None

    async def delete(self, key: str) -> bool:
        path = self._path(key)
        _hash_file(path).unlink(missing_ok=True)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        return True

    async def aclose(self) -> None:
        pass


class LocalVariants:
    def __init__(self, root: str) -> None:
        self.root = Path(root).resolve()
        self._prefix = f"{self.root}/"  # a key is a relative path: no Path join per hit
        self.locks = self.root / ".locks"
        #: Per key: the (inode, mtime, size) of the file last read and its ETag.
        self._etags: dict[str, tuple[tuple[int, int, int], str]] = {}
        #: Why the last write (variant or lock) failed; None once one succeeds.
        self.degraded: str | None = None
        try:
            self.locks.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._failed("lease", str(self.locks), exc)

    def _failed(self, operation: str, what: str, exc: OSError) -> None:
        STORE_ERRORS.labels(operation).inc()
        self.degraded = f"{operation}: {exc.strerror or exc}"
        log.error("variant store cannot write %s (%s): serving renders without storing them",
                  what, exc.strerror or exc)

    @classmethod
    async def open(cls, url: str, settings: Settings, clients: Clients) -> LocalVariants:
        return cls(file_path(url))

    def _opened(self, key: str) -> tuple[int, os.stat_result] | None:
        """The open file of variant ``key`` and its stat; None if there is none."""
        try:
            fd = os.open(self._prefix + key, os.O_RDONLY | os.O_CLOEXEC)
        except (FileNotFoundError, NotADirectoryError):
            return None
        except OSError as exc:
            raise _os_error(exc, "variant") from None
        try:
            st = os.fstat(fd)
        except OSError as exc:
            os.close(fd)
            raise _os_error(exc, "variant") from None
        if not stat.S_ISREG(st.st_mode):  # a folder where a variant would be
            os.close(fd)
            return None
        return fd, st

    async def check(self) -> None:
        """Unavailable unless the folder exists and can be read (readiness)."""
        _check_folder(self.root, "variants", os.R_OK | os.X_OK)

    async def check_writes(self) -> None:
        """After a failed write, Unavailable until a probe write succeeds (readiness): a server
        out of rotation gets no misses, so it must not wait for one to learn the disk is back."""
        if self.degraded is None:
            return
        try:
            await anyio.to_thread.run_sync(_probe_write, self.locks)
        except OSError:
            raise Unavailable(f"writes fail ({self.degraded})") from None
        log.warning("variant store writes again: %s", self.root)
        self.degraded = None

    async def get(self, key: str) -> Blob | None:
        # One open, one fstat, one read per hit: the ETag (a hash of the bytes)
        # is remembered per key with the file's inode, mtime and size. Variants
        # are never overwritten; a purge and a new render of the key make a new
        # file, which would have to reuse the inode, match the size and be
        # written within the same tick of the file system's clock as the old
        # one to pass for it. A deleted variant fails the open.
        # A variant up to _INLINE_READ bytes is read on the event loop: from the
        # page cache that takes less than the hop to a thread and back (per
        # 30 KB get: 9 us inline, 60-110 us through anyio's thread pool).
        # uvicorn 0.54 has no zero-copy send (``http.response.zerocopysend`` or
        # ``pathsend``), so the body is read into memory either way.
        opened = self._opened(key)
        if opened is None:
            return None
        fd, st = opened
        try:
            if st.st_size <= _INLINE_READ:
                body = _read_fd(fd, st.st_size)
            else:
                body = await anyio.to_thread.run_sync(_read_fd, fd, st.st_size)
        except OSError as exc:
            raise _os_error(exc, "variant") from None
        finally:
            os.close(fd)
        stamp = (st.st_ino, st.st_mtime_ns, len(body))
        known = self._etags.get(key)
        if known is not None and known[0] == stamp:
            return Blob(body, known[1], st.st_mtime)
        blob = Blob.of(body, st.st_mtime)
        if len(self._etags) >= ETAGS:
            self._etags.clear()
        self._etags[key] = (stamp, blob.etag)
        return blob

    def _write(self, key: str, body: bytes) -> bool:
        final = self.root / key
        final.parent.mkdir(parents=True, exist_ok=True)
        # Not tempfile.mkstemp: its 0600 would hide variants from a web server
        # or CDN origin reading the folder. 0666 here is cut by the umask.
        tmp = final.parent / f".tmp-{secrets.token_hex(8)}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, final)  # unlike rename, fails if the variant exists
            except FileExistsError:
                return False
            # No fsync of the folder: a link lost in a crash only means one more
            # render; the file's own fsync is what keeps a torn variant unservable.
            # (A miss waited on that second fsync: 2-11 ms on a busy disk.)
            return True
        finally:
            os.unlink(tmp)

    async def put(self, key: str, blob: Blob, metadata: Mapping[str, str]) -> bool:
        try:
            stored = await anyio.to_thread.run_sync(self._write, key, blob.body)
        except OSError as exc:
            self.degraded = f"put: {exc.strerror or exc}"  # the caller logs and counts it
            raise
        self.degraded = None
        return stored

    @asynccontextmanager
    async def lease(self, key: str) -> AsyncIterator[Blob | None]:
        name = hashlib.sha256(key.encode()).hexdigest()[:40]
        try:
            fd = os.open(self.locks / f"{name}.lock", os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            # Read-only, out of inodes, no permission: render unlocked. At
            # worst two processes render the key; the store stays correct,
            # since a variant is linked into place and never overwritten.
            self._failed("lease", f"the lock of {key}", exc)
            yield await self.get(key)
            return
        try:
            delay = 0.002
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    LEASES.labels("taken").inc()
                    break
                except BlockingIOError:
                    if delay == 0.002:
                        LEASES.labels("waited").inc()  # another process renders this key
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 0.05)
                except OSError as exc:  # no locks on this filesystem (ENOLCK): render unlocked
                    self._failed("lease", f"the lock of {key}", exc)
                    break
            yield await self.get(key)
        finally:
            os.close(fd)  # releases the lock

    async def exists(self, key: str) -> bool:
        return (self.root / key).is_file()

    async def list(self, prefix: str = "") -> AsyncIterator[tuple[str, int]]:
        for entry in await anyio.to_thread.run_sync(_walk, self.root, prefix):
            yield entry

    async def delete(self, key: str) -> bool:
        try:
            (self.root / key).unlink()
        except FileNotFoundError:
            return False
        return True

    async def folders(self, prefix: str = "") -> AsyncIterator[str]:
        try:
            names = sorted(e.name for e in os.scandir(self.root / prefix) if e.is_dir(follow_symlinks=False))
        except (FileNotFoundError, NotADirectoryError):
            return
        for name in names:
            if not name.startswith("."):
                yield name

    async def aclose(self) -> None:
        pass


def _walk(root: Path, prefix: str) -> list[tuple[str, int]]:
    """``(key, size)`` of the files below ``root`` whose key starts with ``prefix``;
    dot-files and dot-folders (locks, temp files) are not keys."""
    start = root / prefix.rpartition("/")[0]
    found: list[tuple[str, int]] = []
    for folder, dirs, files in os.walk(start):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(folder).relative_to(root)
        for name in sorted(files):
            key = (base / name).as_posix()
            if name.startswith(".") or not key.startswith(prefix):
                continue
            try:
                found.append((key, (Path(folder) / name).stat().st_size))
            except OSError:
                continue  # gone meanwhile
    return found


def _read_fd(fd: int, size: int) -> bytes:
    """The file open at ``fd``, ``size`` bytes long (its fstat): one read, unless it
    comes back short (a signal, a file over 2 GiB), then on to the end."""
    body = os.read(fd, size)
    return body if len(body) == size else body + _read_rest(fd)


def _read_rest(fd: int) -> bytes:
    parts = []
    while chunk := os.read(fd, _CHUNK):
        parts.append(chunk)
    return b"".join(parts)


def _link_new(tmp: Path, final: Path) -> None:
    try:
        os.link(tmp, final)
    except FileExistsError:
        raise Conflict(f"{final.name} exists") from None


def _hash_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.sha256")


def _hash_beside(tmp: Path, sha256: str) -> Path:
    """``<sha256> <size> <mtime_ns>`` of the file ``tmp`` in a temp file beside it, for
    ``.<name>.sha256`` once ``tmp`` is in place (a link or a rename keeps its size and mtime)."""
    st = tmp.stat()
    hashed = tmp.with_name(f".tmp-{secrets.token_hex(8)}")
    try:
        hashed.write_text(f"{sha256} {st.st_size} {st.st_mtime_ns}\n")
    except BaseException:
        hashed.unlink(missing_ok=True)
        raise
    return hashed


def _recorded_hash(path: Path, st: os.stat_result) -> str | None:
    """The recorded hash, if it was recorded for the file as it is now."""
    try:
        digest, size, mtime = _hash_file(path).read_text().split()
    except (OSError, ValueError):
        return None
    return digest if (int(size), int(mtime)) == (st.st_size, st.st_mtime_ns) else None


def _flush(f: BinaryIO) -> None:
    f.flush()
    os.fsync(f.fileno())


def _check_folder(root: Path, store: str, mode: int) -> None:
    if not root.is_dir():
        raise Unavailable(f"{store} folder {root} does not exist or is not a folder")
    if not os.access(root, mode):
        raise Unavailable(f"{store} folder {root} cannot be read")


def _probe_write(folder: Path) -> None:
    """Create, write and remove a file in ``folder``: what a lease and a variant write do."""
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f".probe-{os.getpid()}"
    try:
        with open(probe, "wb") as f:
            f.write(b"\0")
            f.flush()
            os.fsync(f.fileno())
    finally:
        probe.unlink(missing_ok=True)


def _check_writable(root: Path) -> None:
    try:
        st = os.statvfs(root)
    except OSError as exc:
        raise Unavailable(f"originals folder {root}: {exc.strerror}") from None
    if st.f_flag & os.ST_RDONLY or not os.access(root, os.W_OK | os.X_OK):
        raise Unavailable(f"originals folder {root} cannot be written: uploads fail")
    if st.f_bavail == 0 or (st.f_files and st.f_favail == 0):  # no inodes counted: btrfs
        raise Unavailable(f"originals folder {root} is full: uploads fail")


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:  # some filesystems refuse directory fsync
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)
