"""HTTP origins (httpx): ``https://host/prefix/``, several comma-separated.

An id resolves below a prefix and can never leave it: ids are segments of
``[A-Za-z0-9._-]`` without ``.``/``..`` (see :func:`imgproxy.urls.check_id`),
and every URL we request, redirects included, must start with one of the
prefixes once normalised (:func:`normalise`; a path with ``%2e``, ``%2f``,
``%5c`` or ``\\`` is refused: an origin may resolve them after our check).
Prefixes are tried in order; below each, the id is tried as given and then
with :data:`HTTP_EXTENSIONS` (``photo``, ``photo.jpg``, ...) until one
answers 200. Where an id was found is remembered, so later variants of
it cost one request.

httpx errors and origin answers are mapped where they enter::

    origin                                   ImgproxyError
    ├── 404 / 410 under every candidate      NotFound          404
    ├── body over max_source_bytes           TooLarge          413
    ├── originals in flight over budget      Unavailable       503 (stores/spool.py)
    ├── 5xx, other non-200                   BadGateway        502
    ├── body shorter than Content-Length     BadGateway        502
    ├── redirect outside the prefixes        BadGateway        502
    ├── 206 not covering the range asked     BadGateway        502
    ├── blocked address (see guard.py)       BlockedAddress    502
    ├── unreachable                          BadGateway        502
    └── slower than download_timeout         GatewayTimeout    504

A 502 body names the kind of failure only; the URL, host, origin status and
httpx's text go to the log.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

import httpx
from cachetools import LRUCache

from ..errors import BadGateway, GatewayTimeout, NotFound, TooLarge, Unsupported
from ..render import Source
from . import Located, Original, download_deadline
from .spool import Spool

if TYPE_CHECKING:
    from ..config import Settings
    from .clients import Clients

log = logging.getLogger("imgproxy.stores")

HTTP_EXTENSIONS = ("jpg", "jpeg", "png", "webp", "avif", "gif")
MAX_REDIRECTS = 5
#: Downloads are the origin's bytes as they are: no content coding to undo.
_IDENTITY = {"accept-encoding": "identity"}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
#: An escaped dot, slash or backslash, or a backslash: an origin may decode and
#: resolve these after our prefix check, so a path holding one is refused.
_HIDDEN = re.compile(r"%(2e|2f|5c)|\\", re.IGNORECASE)
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def _unescape(match: re.Match[str]) -> str:
    char = chr(int(match.group(1), 16))
    return char if char in _UNRESERVED else match.group(0).upper()


def normalise(url: str) -> str | None:
    """``url`` as we request it: unreserved escapes decoded, dot segments resolved.

    None if it cannot be parsed, or its path hides a dot, slash or backslash
    (:data:`_HIDDEN`).
    """
    try:
        parsed = httpx.URL(url)
        path, mark, query = parsed.raw_path.decode("ascii").partition("?")
        if _HIDDEN.search(path):
            return None
        path = _ESCAPE.sub(_unescape, path)
        # Parsing again resolves the dot segments the decoding may have revealed.
        return str(httpx.URL(f"{parsed.scheme}://{parsed.netloc.decode('ascii')}{path}{mark}{query}"))
    except (httpx.InvalidURL, UnicodeError):
        return None


@contextmanager
def mapped(url: str) -> Iterator[None]:
    try:
        yield
    except httpx.TimeoutException as exc:
        raise GatewayTimeout("the origin did not answer in time") from exc
    except httpx.RemoteProtocolError as exc:
        log.warning("origin %s sent a broken response: %s", url, exc)
        raise BadGateway("the origin's response was truncated or malformed") from exc
    except httpx.HTTPError as exc:
        log.warning("origin %s failed: %s", url, exc)
        raise BadGateway("the origin is unreachable") from exc


class HttpOriginals:
    def __init__(self, client: httpx.AsyncClient, prefixes: list[str], max_bytes: int, timeout: float,
                 spool: Spool) -> None:
        self.client = client
        self.spool = spool
        self.prefixes = [normalise(p.strip()) or str(httpx.URL(p.strip())) for p in prefixes]
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._urls: LRUCache[str, str] = LRUCache(maxsize=10_000)  # id -> URL it was found at

    @classmethod
    async def open(cls, url: str, settings: Settings, clients: Clients) -> HttpOriginals:
        prefixes = [p if p.endswith("/") else p + "/" for p in url.split(",")]
        return cls(clients.http(), prefixes, settings.max_source_bytes, settings.download_timeout,
                   clients.spool())

    def allowed(self, url: str) -> bool:
        normal = normalise(url)  # escapes decoded, dot segments removed, host lower-cased
        return normal is not None and any(normal.startswith(prefix) for prefix in self.prefixes)

    def candidates(self, id: str) -> Iterator[str]:
        found = self._urls.get(id)
        if found is not None:
            yield found
        for prefix in self.prefixes:
            yield f"{prefix}{id}"
            for ext in HTTP_EXTENSIONS:
                yield f"{prefix}{id}.{ext}"

    async def fetch(self, id: str) -> Original:
        with download_deadline(self.timeout):
            for url in self.candidates(id):
                try:
                    original = await self._get(url)
                except NotFound:
                    continue
                self._remember(id, url)
                return original
        raise NotFound("no such original")

    async def _get(self, url: str) -> Original:
        async with self._opened(url) as (final, response):
            return await self._read(final, response)

    @asynccontextmanager
    async def _opened(self, url: str, headers: dict[str, str] | None = None
                      ) -> AsyncIterator[tuple[str, httpx.Response]]:
        """A streamed GET of ``url``, redirects followed only below the prefixes."""
        for _ in range(MAX_REDIRECTS + 1):
            if not self.allowed(url):
                log.warning("refused origin URL outside the allowed prefixes: %s", url)
                raise BadGateway("the origin redirected outside the allowed prefixes")
            url = normalise(url) or url  # what was checked is what is requested
            with mapped(url):
                async with self.client.stream("GET", url, headers=headers) as response:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        url = str(response.url.join(response.headers["location"]))
                        continue
                    yield url, response
                    return
        raise BadGateway("the origin redirected too many times")

    # Downloads (GET /o/): the original as the origin has it, whatever its size.

    async def locate(self, id: str) -> Located:
        """The first candidate the origin answers 200 for, from its headers alone."""
        with download_deadline(self.timeout):
            for url in self.candidates(id):
                try:
                    async with self._opened(url, _IDENTITY) as (final, response):
                        found = _located(final, response)
                except NotFound:
                    continue
                self._remember(id, url)
                return found
        raise NotFound("no such original")

    async def read(self, key: str, start: int = 0, end: int | None = None) -> AsyncGenerator[bytes, None]:
        """Bytes ``start..end`` of the URL ``key`` (from :meth:`locate`): a ranged GET,
        or, from an origin that ignores ranges, its whole body with the rest skipped."""
        wanted = {"range": f"bytes={start}-{'' if end is None else end}"} if start or end is not None else {}
        async with self._opened(key, {**_IDENTITY, **wanted}) as (url, response):
            if response.status_code == 206:
                skip = start - _range_start(url, response, start, end)
            else:
                _check_status(url, response)
                skip = start
            left = None if end is None else end - start + 1
            with mapped(url):
                async for received in response.aiter_raw():
                    cut, skip = min(skip, len(received)), max(0, skip - len(received))
                    part = received[cut:] if left is None else received[cut:cut + left]
                    if left is not None:
                        left -= len(part)
                    if part:
                        yield part
                    if left == 0:
                        return

    async def _read(self, url: str, response: httpx.Response) -> Original:
        _check_status(url, response)
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise TooLarge(f"original is {declared} bytes; the limit is {self.max_bytes}",
                           limit="max_source_bytes")
        # Decoded bytes: the cap also covers a compression bomb.
        spooled = await self.spool.receive(response.aiter_bytes(), self.max_bytes,
                                           int(declared) if declared.isdigit() else None)
        validator = response.headers.get("etag") or response.headers.get("last-modified") or str(spooled.size)
        return Original(url, f"{url}:{validator}", Source(path=spooled.path), spooled)

    def _remember(self, id: str, url: str) -> None:
        self._urls[id] = url

    def list_keys(self, prefix: str = "") -> AsyncIterator[str]:
        raise Unsupported("HTTP origins cannot be listed: give the ids (arguments, --ids-file or stdin)")

    async def aclose(self) -> None:
        pass  # the client belongs to the lifespan


def _check_status(url: str, response: httpx.Response) -> None:
    """A 200 or the mapped error: 404/410 is a missing original, the rest the origin's fault."""
    status = response.status_code
    if status in (404, 410):
        raise NotFound("no such original")
    if status != 200:
        log.warning("origin %s answered %d", url, status)
        raise BadGateway("the origin answered with an error")


def _located(url: str, response: httpx.Response) -> Located:
    _check_status(url, response)
    size = response.headers.get("content-length", "")
    if not size.isdigit():
        raise Unsupported("the origin does not say how large the original is")
    validator = response.headers.get("etag") or response.headers.get("last-modified") or size
    tag = hashlib.blake2b(f"{url}:{validator}".encode(), digest_size=12).hexdigest()
    return Located(url, int(size), f'"{tag}"', _mtime(response.headers.get("last-modified")))


def _mtime(value: str | None) -> float | None:
    """``Last-Modified`` in unix seconds; None when absent or not a date (it only labels a download)."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, OverflowError):
        return None


def _range_start(url: str, response: httpx.Response, start: int, end: int | None) -> int:
    """Where a 206's body starts in the original, when its ``Content-Range``
    covers ``start..end`` (to the last byte when ``end`` is None); else 502:
    an origin's other range must never go out labelled as the one asked for."""
    answered = response.headers.get("content-range", "")
    match = _CONTENT_RANGE.fullmatch(answered.strip())
    if match is not None:
        first, last, total = int(match[1]), int(match[2]), match[3]
        through = end if end is not None else int(total) - 1 if total != "*" else None
        if first <= start and through is not None and first <= last >= through:
            return first
    log.warning("origin %s answered bytes %d-%s with Content-Range %r", url, start,
                "" if end is None else end, answered[:100])
    raise BadGateway("the origin answered a different byte range")
