"""uvicorn's httptools protocol with the two limits it lacks: header bytes and header time.

uvicorn bounds neither with httptools (h11 has ``h11_max_incomplete_event_size``,
httptools nothing): one 400 MB header was read whole, and slow-header
connections were held as long as their clients liked. This protocol counts
the bytes received while a request's headers are incomplete and answers 431
and closes past ``max_header_bytes``, *before* httptools buffers more; and it
closes a connection whose headers are not complete ``header_timeout`` seconds
after it opened or after its previous response (408, closed). Everything else
is uvicorn's: idle keep-alive (``timeout_keep_alive``), ``limit_concurrency``.

It also sends a response's head and the first part of its body in one write
(:class:`_Coalescing`): uvicorn writes the head when the app sends
``http.response.start`` and the body when it sends ``http.response.body``,
two ``send`` system calls on the socket for every small response, and the
first of them, a few hundred bytes through the whole loopback TCP path, was a
third of a memory-tier hit's time under load.

``imgproxy serve`` passes it to uvicorn as ``http="imgproxy.web.protocol:BoundedHttpTools"``
(an import string, so ``--workers N`` processes load it too). Its limits come
from the settings in the environment, which ``serve`` exports for every
process, and the byte cap also from uvicorn's ``h11_max_incomplete_event_size``.
"""

from __future__ import annotations

import asyncio
import functools
import json
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ..config import Settings, load_settings


@functools.cache
def _settings() -> Settings:
    return load_settings()


def _response(status: bytes, error: str, detail: str) -> bytes:
    body = json.dumps({"error": error, "detail": detail}).encode()
    return (b"HTTP/1.1 " + status + b"\r\ncontent-type: application/json\r\ncache-control: no-store\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


#: Up to this many bytes, a body is joined to its head; past it they go out as a pair.
_JOIN_MAX = 64 * 1024


class _Coalescing:
    """The connection's transport, holding back one write (a response's head)
    until the next write, the end of the response, or the close."""

    __slots__ = ("_held", "_transport", "armed")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._held: bytes | None = None
        self.armed = False  # hold the next write

    def write(self, data: bytes) -> None:
        if self._held is not None:
            held, self._held = self._held, None
            if len(data) > _JOIN_MAX:  # no copy of a large body: uvloop sends the two in one writev
                self._transport.writelines((held, data))
                return
            data = held + data  # copying a small body costs less than a second system call
        elif self.armed:
            self.armed = False
            self._held = data
            return
        self._transport.write(data)

    def flush(self) -> None:
        self.armed = False
        if self._held is not None:
            data, self._held = self._held, None
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, get_extra_info, ...: the transport's
        return getattr(self._transport, name)


class BoundedHttpTools(HttpToolsProtocol):
    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        settings = _settings()
        self.max_header_bytes = config.h11_max_incomplete_event_size or settings.max_header_bytes
        self.header_timeout = settings.header_timeout
        self._header_bytes = 0
        self._tail = b""  # the last bytes seen, for a blank line split across reads
        self._reading_headers = True
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # The protocol and each request's cycle write through it; flow control
        # (pause and resume reading) was bound to the transport itself above.
        self._out = _Coalescing(transport)
        self.transport = self._out  # type: ignore[assignment]
        self._await_headers()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._reading_headers:
            # Only the bytes up to the blank line that ends the headers: a
            # request's body may arrive in the same read (an upload's does).
            seen = self._tail + data
            end = seen.find(b"\r\n\r\n")
            self._header_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._tail))
            self._tail = seen[-3:]
            if self._header_bytes > self.max_header_bytes:
                self._refuse(b"431 Request Header Fields Too Large", "headers_too_large",
                             f"request headers are over {self.max_header_bytes} bytes")
                return
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._stop_header_timer()
        # Hold the head of this request's response for its body, unless the
        # request waits for a response still going (pipelined) or for "100
        # Continue" (which must go out alone, before the client sends a body).
        previous = self.cycle
        self._out.armed = not self.expect_100_continue and (previous is None or previous.response_complete)
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        self._out.flush()  # a HEAD or bodyless response's head
        super().on_response_complete()
        if not self.transport.is_closing():
            self._await_headers()  # the next request's headers, on the same clock

    def _await_headers(self) -> None:
        self._reading_headers = True
        self._header_bytes = 0
        self._tail = b""
        self._stop_header_timer()
        self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self._reading_headers and not self.transport.is_closing():
            # Nothing sent yet on an idle keep-alive connection: just close it.
            if self._header_bytes:
                self._refuse(b"408 Request Timeout", "timeout",
                             f"request headers took over {self.header_timeout:g}s")
            else:
                self.transport.close()

    def _refuse(self, status: bytes, error: str, detail: str) -> None:
        self._reading_headers = False
        self._stop_header_timer()
        self.transport.write(_response(status, error, detail))
        self.transport.close()
