"""Request ids, the access log, and the log format (JSON or text).

:class:`RequestLog` is pure ASGI middleware around the whole app. For every
HTTP request it

- takes the request's ``X-Request-ID`` when it is 1 to 64 printable ASCII
  characters (no spaces), else mints one, and echoes it on the response;
- sets ``Date`` from the clock that stamps ``Last-Modified`` (uvicorn's own
  ``Date`` is turned off: it ticks once a second, so a fresh render's
  ``Last-Modified`` could be a second later than it);
- writes one access line (unless ``access_log`` is off): method, path (the
  query, and so the signature, left out), status, tier, bytes, milliseconds,
  request id, the error category of an error, the client address and its
  User-Agent, in the log format (:class:`AccessLines`);
- counts error responses in ``imgproxy_errors_total{category}`` and observes
  every request's time in ``imgproxy_request_seconds{outcome}``.

The client is uvicorn's ``scope["client"]``: the peer, or the nearest
``X-Forwarded-For`` address that is not a trusted proxy when the peer is one
(``IMGPROXY_TRUSTED_PROXIES``, handed to uvicorn by ``imgproxy serve``). The
client and User-Agent are only looked up when a batch of lines is formatted,
never on the request's path.

Handlers below it fill in the :class:`RequestRecord` found at
``scope[RECORD]``: the tier that served a variant, or the error category.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from json.encoder import encode_basestring_ascii
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from ..metrics import ERRORS, LATENCY

#: The scope key of the request's :class:`RequestRecord`.
RECORD = "imgproxy.request"
_VALID_ID = re.compile(rb"[\x21-\x7e]{1,64}")


@dataclass(slots=True)
class RequestRecord:
    id: bytes
    tier: str | None = None
    error: str | None = None  # the error category (the JSON body's "error")
    status: int = 0  # the response's, once started
    size: int = 0  # body bytes sent


def note_error(scope: Scope, category: str) -> None:
    record: RequestRecord | None = scope.get(RECORD)
    if record is not None:
        record.error = category


#: One request's access line, unformatted: wall-clock time, method, path,
#: status, tier, bytes, seconds, request id, error category, and the scope's
#: client and headers (read when the line is formatted).
Access = tuple[float, str, str, int, str | None, int, float, bytes, str | None,
               tuple[str, int] | None, list[tuple[bytes, bytes]]]
#: The most characters of a User-Agent (and of a client address) logged.
UA_CHARS = 200
_CLIENT_CHARS = 64
_OTHER = LATENCY["other"]


class AccessLines:
    """Access lines, written in batches straight to stderr.

    Through ``logging`` a line cost about 140 us (a LogRecord, a formatter, a
    lock and a write per request), five times a memory hit. Here a request
    only appends its fields; lines are formatted and reach stderr in one
    ``write`` per batch: every 0.1 s, at ``LIMIT`` lines, and at shutdown.
    Each write is at most 4 KiB of whole lines, so lines of several server
    processes sharing a pipe never mix. The lines look like the ``logging``
    ones (same fields, same logger name).
    """

    INTERVAL = 0.1
    LIMIT = 512  # lines, about 64 KiB
    _ATOMIC = 4096  # PIPE_BUF: a pipe write up to this size is never split

    def __init__(self, json_lines: bool, fd: int = 2) -> None:
        self.json = json_lines
        self.fd = fd
        self._pending: list[Access] = []
        self._flush_at: asyncio.TimerHandle | None = None
        self._stamp = (0, "")

    def add(self, access: Access) -> None:
        pending = self._pending
        pending.append(access)
        if len(pending) >= self.LIMIT:
            self.flush()
        elif self._flush_at is None:
            self._flush_at = asyncio.get_running_loop().call_later(self.INTERVAL, self.flush)

    def flush(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        pending, self._pending = self._pending, []
        line = self._json_line if self.json else self._text_line
        chunk: list[bytes] = []
        size = 0
        for access in pending:
            data = line(access).encode("utf-8", "replace")
            if chunk and size + len(data) > self._ATOMIC:
                self._write(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(data)
            size += len(data)
        if chunk:
            self._write(b"".join(chunk))

    def _json_line(self, access: Access) -> str:
        now, method, path, status, tier, size, seconds, request_id, error, peer, headers = access
        # What json.dumps makes of the same dict, at a quarter of the cost.
        client, ua = _client(peer), _user_agent(headers)
        end = (f', "client": {"null" if client is None else _quote(client)}, '
               f'"ua": {"null" if ua is None else _quote(ua)}')
        end += "}\n" if error is None else f', "error": {_quote(error)}}}\n'
        return (f'{{"ts": "{self._ts(now)}+00:00", "level": "info", "logger": "imgproxy.access", '
                f'"msg": {_quote(f"{method} {path} {status}")}, "method": {_quote(method)}, '
                f'"path": {_quote(path)}, "status": {status}, '
                f'"tier": {"null" if tier is None else _quote(tier)}, "bytes": {size}, '
                f'"ms": {round(seconds * 1000, 2)!r}, "request_id": {_quote(request_id.decode("ascii"))}{end}')

    def _text_line(self, access: Access) -> str:
        now, method, path, status, tier, size, seconds, request_id, error, peer, headers = access
        # The path is the client's, percent-decoded: a %0a in it would start a
        # forged line; the client (from X-Forwarded-For) and the User-Agent are
        # the client's too. The request id is printable ASCII already; tier and error are ours.
        extra = f" tier={tier}" if tier else ""
        extra += f" error={error}" if error else ""
        client, ua = _client(peer), _user_agent(headers)
        tail = f" client={_word(client)}" if client else ""
        tail += f' ua="{escape(ua)}"' if ua is not None else ""  # last: it has spaces
        return (f"{self._ts(now).replace('.', ',')} INFO imgproxy.access: {escape(method)} {escape(path)} "
                f"{status}{extra} "
                f"bytes={size} ms={round(seconds * 1000, 2)} request_id={request_id.decode('ascii')}{tail}\n")

    def _ts(self, now: float) -> str:
        """``2026-01-02T03:04:05.678`` (UTC); the second part is reused within a second."""
        second = int(now)
        if second != self._stamp[0]:
            self._stamp = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        return f"{self._stamp[1]}.{int((now - second) * 1000):03d}"

    def _write(self, data: bytes) -> None:
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError:
            pass  # stderr gone or full: the access log is not worth a failed request


class RequestLog:
    def __init__(self, app: ASGIApp, enabled: bool = True, json_lines: bool = False) -> None:
        self.app = app
        self.enabled = enabled
        self.lines = AccessLines(json_lines)
        self._date = (0, (b"date", b""))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        record = RequestRecord(_request_id(scope["headers"]))
        scope[RECORD] = record

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
                # The message is ours to change (Starlette's middleware does too);
                # its header list may be a cached response's, so it is not.
                message["headers"] = [*message.get("headers", ()), (b"x-request-id", record.id),
                                      self._http_date()]
            elif message["type"] == "http.response.body":
                record.size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            record.error = record.error or "internal"
            raise
        finally:
            seconds = time.perf_counter() - started
            if record.error is not None:
                ERRORS.labels(record.error).inc()
                LATENCY["error"].observe(seconds)
            else:
                LATENCY.get(record.tier or "", _OTHER).observe(seconds)
            if self.enabled:
                self.lines.add((time.time(), scope["method"], scope["path"], record.status, record.tier,
                                record.size, seconds, record.id, record.error, scope.get("client"),
                                scope["headers"]))

    def _http_date(self) -> tuple[bytes, bytes]:
        now = int(time.time())
        if now != self._date[0]:
            self._date = (now, (b"date", email.utils.formatdate(now, usegmt=True).encode()))
        return self._date[1]


def _client(peer: tuple[str, int] | None) -> str | None:
    return None if peer is None else str(peer[0])[:_CLIENT_CHARS]


def _user_agent(headers: list[tuple[bytes, bytes]]) -> str | None:
    for name, value in headers:
        if name == b"user-agent":
            return value[:UA_CHARS].decode("latin-1")
    return None


def _request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == b"x-request-id":
            if _VALID_ID.fullmatch(value):
                return value
            break
    return _mint_id()


# Minted ids: 16 hex digits, ``base + n * _STEP`` (mod 2**64) for the n-th id
# of this process. _STEP is odd, so a process never repeats an id within 2**64
# of them; ``base`` is random per process (and again in a forked child), so two
# processes' ids meet no more often than random 64-bit ids would. A counter
# costs a tenth of ``os.urandom`` per request.
_STEP = 0x9E3779B97F4A7C15
_MASK = (1 << 64) - 1


class _Ids:
    def __init__(self) -> None:
        self.reseed()
        os.register_at_fork(after_in_child=self.reseed)

    def reseed(self) -> None:
        self.next = itertools.count(int.from_bytes(os.urandom(8), "big"), _STEP).__next__


_IDS = _Ids()


def _mint_id() -> bytes:
    return b"%016x" % (_IDS.next() & _MASK)


#: Line breaks and other controls (C0, DEL, C1, U+2028/9), and the backslash
#: that escapes them, so that an escaped line reads back unambiguously.
_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\\]")


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    return "\\\\" if char == "\\" else f"\\x{ord(char):02x}" if ord(char) < 256 else f"\\u{ord(char):04x}"


def escape(text: str) -> str:
    """``text`` on one line, whatever a client put in it: ``\\n`` is written ``\\x0a``."""
    return _UNSAFE.sub(_escaped, text)


def _word(text: str) -> str:
    """``text`` escaped as one space-free field (a client address from X-Forwarded-For is anyone's text)."""
    return escape(text).replace(" ", "\\x20")


class TextFormatter(logging.Formatter):
    """The text format, one line a record: a message that quotes a client's
    path or id is escaped (a traceback, added after it, keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))


_quote = encode_basestring_ascii  # a JSON string, escaped, quotes included (json.dumps' own, in C)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, exc. (Access lines are written apart,
    batched, by :class:`RequestLog`.)"""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def log_format(settings: Settings) -> str:
    """``json`` or ``text``: ``auto`` means text in development, JSON in production."""
    if settings.log_format != "auto":
        return settings.log_format
    return "json" if settings.env == "production" else "text"


def logging_config(settings: Settings) -> dict[str, Any]:
    """The ``logging.config.dictConfig`` of a server process (uvicorn's ``log_config``)."""
    if log_format(settings) == "json":
        formatter: dict[str, Any] = {"()": f"{__name__}.JsonFormatter"}
    else:
        formatter = {"()": f"{__name__}.TextFormatter", "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
    level = settings.log_level.upper()
    quiet = {name: {"level": "WARNING"} for name in ("pyvips", "httpx", "aiobotocore.credentials")}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"default": formatter},
        "handlers": {"default": {"class": "logging.StreamHandler", "formatter": "default",
                                 "stream": "ext://sys.stderr"}},
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            "uvicorn": {"level": level},
            **quiet,
        },
    }
