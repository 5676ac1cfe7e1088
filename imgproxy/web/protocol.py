"""uvicorn's httptools protocol with the limits it lacks: header bytes, header time, body time.

uvicorn bounds neither with httptools (h11 has ``h11_max_incomplete_event_size``,
httptools nothing): one 400 MB header was read whole, and slow-header
connections were held as long as their clients liked. This protocol counts
the bytes received while a request's headers are incomplete and answers 431
and closes past ``max_header_bytes``, *before* httptools buffers more; and it
closes a connection whose headers are not complete ``header_timeout`` seconds
after it opened or after its previous response (408, closed), and one whose
body is not complete ``body_timeout`` seconds after its headers (408, closed:
a byte a second would hold an upload open for ever). Everything else
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


#: A refused or answered-early connection reads and drops what its client
#: still sends (this many bytes at most) for this long, then closes.
LINGER = 5.0
LINGER_BYTES = 1 << 20


class BoundedHttpTools(HttpToolsProtocol):
    """Header bytes are counted from the end of the previous request's body,
    not from its response: pipelined bytes that wait behind a response in
    flight count too. Past the cap then, reading stops and the 431 follows
    that response, in order. (uvicorn pauses reading only once a pipelined
    request's headers are complete, so endless ones were read whole.)"""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        settings = _settings()
        self.max_header_bytes = config.h11_max_incomplete_event_size or settings.max_header_bytes
        self.header_timeout = settings.header_timeout
        self.body_timeout = settings.body_timeout
        self._header_bytes = 0
        self._tail = b""  # the last bytes seen, for a blank line split across reads
        self._reading_headers = True
        self._begun = False  # the parser has seen the start of the next request
        self._body_pending = False  # a request's headers are in, its body is not
        self._refusal: bytes | None = None  # to send once the response in flight is complete
        self._lingering = False
        self._linger_bytes = LINGER_BYTES
        self._timer: asyncio.TimerHandle | None = None  # the one deadline: headers, body, or the linger

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # The protocol and each request's cycle write through it; flow control
        # (pause and resume reading) was bound to the transport itself above.
        self._out = _Coalescing(transport)
        self.transport = self._out  # type: ignore[assignment]
        self._arm(self.header_timeout, self._headers_too_slow)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            self._linger_bytes -= len(data)
            if self._linger_bytes < 0:
                self.flow.pause_reading()  # no more: what is left unread waits for the close
            return
        if self._refusal is not None:  # refused already: nothing more is read
            self.flow.pause_reading()  # again: a cycle's receive() resumes reading
            return
        if self._reading_headers:
            # Only the bytes up to the blank line that ends the headers: a
            # request's body may arrive in the same read (an upload's does).
            # A read that ends one request's body and starts the next one's
            # headers is not counted: at most one read (256 KiB) is missed.
            seen = self._tail + data
            end = seen.find(b"\r\n\r\n")
            self._header_bytes += len(data) if end < 0 else max(0, end + 4 - len(self._tail))
            self._tail = seen[-3:]
            if self._header_bytes > self.max_header_bytes:
                self._refuse(b"431 Request Header Fields Too Large", "headers_too_large",
                             f"request headers are over {self.max_header_bytes} bytes")
                return
        super().data_received(data)
        if self._body_pending and self._timer is None and not self.pipeline:
            self._arm(self.body_timeout, self._body_too_slow)  # from the end of its headers

    def on_message_begin(self) -> None:
        self._begun = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        self._reading_headers = False
        self._body_pending = True  # until on_message_complete, at once for a bodyless request
        self._disarm()
        # Hold the head of this request's response for its body, unless the
        # request waits for a response still going (pipelined) or for "100
        # Continue" (which must go out alone, before the client sends a body).
        previous = self.cycle
        self._out.armed = not self.expect_100_continue and (previous is None or previous.response_complete)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._body_pending = False
        self._disarm()  # the body's deadline
        # The next request's headers start here, pipelined or not.
        self._reading_headers = True
        self._begun = False
        self._header_bytes = 0
        self._tail = b""

    def on_response_complete(self) -> None:
        self._out.flush()  # a HEAD or bodyless response's head
        queued = bool(self.pipeline)  # requests parsed behind this one: super() starts the next
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if queued:
            if self._body_pending and not self.pipeline:  # the last one parsed starts: its body's clock
                self._arm(self.body_timeout, self._body_too_slow)
            return
        if self._refusal is not None:
            self.transport.write(self._refusal)
            self._linger()
        elif self._body_pending:
            # Answered before its body was all in (a refusal, a 413): the rest
            # is not read, and the connection cannot carry another request.
            self._linger()
        elif self._reading_headers:
            self._arm(self.header_timeout, self._headers_too_slow)  # the next request's, from here

    def _in_flight(self) -> bool:
        """A response is still owed (started, or waiting behind a pipelined one)."""
        return self.cycle is not None and not self.cycle.response_complete

    def _arm(self, seconds: float, expired: Any) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_too_slow(self) -> None:
        self._timer = None
        if self._reading_headers and not self.transport.is_closing():
            # Nothing sent yet on an idle keep-alive connection: just close it.
            if self._begun or self._header_bytes:
                self._refuse(b"408 Request Timeout", "timeout",
                             f"request headers took over {self.header_timeout:g}s")
            else:
                self.transport.close()

    def _body_too_slow(self) -> None:
        self._timer = None
        if not self._body_pending or self.transport.is_closing():
            return
        if not self.cycle.response_started:
            self.transport.write(_response(b"408 Request Timeout", "timeout",
                                           f"the request body took over {self.body_timeout:g}s"))
        # The app reading the body sees the client gone, and nothing it sends goes out.
        self.cycle.disconnected = True
        self.cycle.message_event.set()
        self._linger()

    def _refuse(self, status: bytes, error: str, detail: str) -> None:
        """Answer and close; after the response in flight, if there is one."""
        self._reading_headers = False
        self._disarm()
        refusal = _response(status, error, detail)
        if self._in_flight():
            self._refusal = refusal
            self.flow.pause_reading()
            return
        self.transport.write(refusal)
        self._linger()

    def _linger(self) -> None:
        """Close once what was written has gone out: end our side now, then read
        and drop what the client still sends, for :data:`LINGER` seconds.
        A close with unread bytes makes the kernel reset the connection, and a
        reset drops what had not gone out yet: a response's tail, the refusal."""
        self._lingering = True
        self._unset_keepalive_if_required()
        self._out.flush()
        if not self.transport.can_write_eof():  # TLS
            self.transport.close()
            return
        self.transport.write_eof()
        self.flow.resume_reading()
        self._arm(LINGER, self.transport.close)
