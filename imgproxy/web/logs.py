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
  request id, and the error category of an error, in the log format
  (:class:`AccessLines`);
- counts error responses in ``imgproxy_errors_total{category}``.

Handlers below it fill in the :class:`RequestRecord` found at
``scope[RECORD]``: the tier that served a variant, or the error category.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..config import Settings
from ..metrics import ERRORS

#: The scope key of the request's :class:`RequestRecord`.
RECORD = "imgproxy.request"
_VALID_ID = re.compile(rb"[\x21-\x7e]{1,64}")


@dataclass(slots=True)
class RequestRecord:
    id: bytes
    tier: str | None = None
    error: str | None = None  # the error category (the JSON body's "error")


def note_error(scope: Scope, category: str) -> None:
    record: RequestRecord | None = scope.get(RECORD)
    if record is not None:
        record.error = category


class AccessLines:
    """Access lines, written in batches straight to stderr.

    Through ``logging`` a line cost about 140 us (a LogRecord, a formatter, a
    lock and a write per request), five times a memory hit; built here it
    costs a few, and lines reach stderr in one ``write`` per batch: every
    0.1 s, at 64 KiB, and at shutdown. Each write is at most 4 KiB of whole
    lines, so lines of several server processes sharing a pipe never mix.
    The lines look like the ``logging`` ones (same fields, same logger name).
    """

    INTERVAL = 0.1
    LIMIT = 64 * 1024
    _ATOMIC = 4096  # PIPE_BUF: a pipe write up to this size is never split

    def __init__(self, json_lines: bool, fd: int = 2) -> None:
        self.json = json_lines
        self.fd = fd
        self._lines: list[str] = []
        self._size = 0
        self._flush_at: asyncio.TimerHandle | None = None
        self._stamp = (0, "")

    def add(self, method: str, path: str, status: int, tier: str | None, size: int, ms: float,
            request_id: str, error: str | None) -> None:
        now = time.time()
        if self.json:
            line = json.dumps({"ts": self._ts(now), "level": "info", "logger": "imgproxy.access",
                               "msg": f"{method} {path} {status}", "method": method, "path": path,
                               "status": status, "tier": tier, "bytes": size, "ms": ms,
                               "request_id": request_id, **({"error": error} if error else {})}) + "\n"
        else:
            extra = f" tier={tier}" if tier else ""
            extra += f" error={error}" if error else ""
            line = (f"{self._ts(now, text=True)} INFO imgproxy.access: {method} {path} {status}{extra} "
                    f"bytes={size} ms={ms} request_id={request_id}\n")
        self._lines.append(line)
        self._size += len(line)
        if self._size >= self.LIMIT:
            self.flush()
        elif self._flush_at is None:
            self._flush_at = asyncio.get_running_loop().call_later(self.INTERVAL, self.flush)

    def _ts(self, now: float, text: bool = False) -> str:
        second = int(now)
        if second != self._stamp[0]:
            self._stamp = (second, datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S"))
        ms = int((now - second) * 1000)
        return f"{self._stamp[1]},{ms:03d}" if text else f"{self._stamp[1]}.{ms:03d}+00:00"

    def flush(self) -> None:
        if self._flush_at is not None:
            self._flush_at.cancel()
            self._flush_at = None
        lines, self._lines, self._size = self._lines, [], 0
        chunk: list[bytes] = []
        size = 0
        for line in (line.encode("utf-8", "replace") for line in lines):
            if chunk and size + len(line) > self._ATOMIC:
                self._write(b"".join(chunk))
                chunk, size = [], 0
            chunk.append(line)
            size += len(line)
        if chunk:
            self._write(b"".join(chunk))

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
        self._date = (0, b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        record = RequestRecord(_request_id(scope["headers"]))
        scope[RECORD] = record
        status = 0
        size = 0

        async def send_with_id(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), (b"x-request-id", record.id),
                                                  (b"date", self._http_date())]}
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            record.error = record.error or "internal"
            raise
        finally:
            if record.error is not None:
                ERRORS.labels(record.error).inc()
            if self.enabled:
                self.lines.add(scope["method"], scope["path"], status, record.tier, size,
                               round((time.perf_counter() - started) * 1000, 2), record.id.decode("ascii"),
                               record.error)

    def _http_date(self) -> bytes:
        now = int(time.time())
        if now != self._date[0]:
            self._date = (now, email.utils.formatdate(now, usegmt=True).encode())
        return self._date[1]


def _request_id(headers: list[tuple[bytes, bytes]]) -> bytes:
    for name, value in headers:
        if name == b"x-request-id":
            if _VALID_ID.fullmatch(value):
                return value
            break
    return os.urandom(8).hex().encode()


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, the access fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        access = getattr(record, "access", None)
        if access is not None:
            out.update(access)
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
        formatter = {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}
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
