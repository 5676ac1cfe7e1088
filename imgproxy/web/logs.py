"""Request ids, the access log, and the log format (JSON or text).

:class:`RequestLog` is pure ASGI middleware around the whole app. For every
HTTP request it

- takes the request's ``X-Request-ID`` when it is 1 to 64 printable ASCII
  characters (no spaces), else mints one, and echoes it on the response;
- sets ``Date`` from the clock that stamps ``Last-Modified`` (uvicorn's own
  ``Date`` is turned off: it ticks once a second, so a fresh render's
  ``Last-Modified`` could be a second later than it);
- writes one line to the ``imgproxy.access`` logger (unless ``access_log`` is
  off): method, path (the query, and so the signature, left out), status,
  tier, bytes, milliseconds, request id, and the error category of an error;
- counts error responses in ``imgproxy_errors_total{category}``.

Handlers below it fill in the :class:`RequestRecord` found at
``scope[RECORD]``: the tier that served a variant, or the error category.
"""

from __future__ import annotations

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

access_log = logging.getLogger("imgproxy.access")

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


class RequestLog:
    def __init__(self, app: ASGIApp, enabled: bool = True) -> None:
        self.app = app
        self.enabled = enabled
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
                self._log(scope, record, status, size, time.perf_counter() - started)

    def _http_date(self) -> bytes:
        now = int(time.time())
        if now != self._date[0]:
            self._date = (now, email.utils.formatdate(now, usegmt=True).encode())
        return self._date[1]

    @staticmethod
    def _log(scope: Scope, record: RequestRecord, status: int, size: int, seconds: float) -> None:
        fields: dict[str, Any] = {
            "method": scope["method"], "path": scope["path"], "status": status, "tier": record.tier,
            "bytes": size, "ms": round(seconds * 1000, 2), "request_id": record.id.decode("ascii"),
        }
        if record.error is not None:
            fields["error"] = record.error
        text = " ".join(f"{k}={v}" for k, v in fields.items() if k not in ("method", "path", "status")
                        and v is not None)
        access_log.info("%s %s %d %s", scope["method"], scope["path"], status, text, extra={"access": fields})


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
            # Its own switch: an operator who wants warnings only may still want the access log.
            "imgproxy.access": {"level": "INFO" if settings.access_log else "WARNING"},
            **quiet,
        },
    }
