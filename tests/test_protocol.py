"""Request limits of the server itself (web/protocol.py, uvicorn settings), on raw sockets."""

from __future__ import annotations

import select
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from conftest import Server, add_original, corpus

from imgproxy.urls import original_url


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _connect(server: Server) -> socket.socket:
    host, port = server.base_url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return out


def test_oversized_headers_get_431_and_the_connection_closed(server_factory: Callable[..., Server]) -> None:
    server = server_factory()
    before = _rss(server.proc.pid)
    for _ in range(5):  # 5 MB of header in all; each refused once it passes 32 KiB
        sock = _connect(server)
        sent = 0
        try:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            for _ in range(64):  # 1 MiB, unless the server hangs up first
                sock.sendall(b"a" * 16384)
                sent += 16384
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_all(sock)
        sock.close()
        assert answer.startswith(b"HTTP/1.1 431 "), (sent, answer[:200])
        assert b'"headers_too_large"' in answer
    grown = _rss(server.proc.pid) - before
    print(f"five 1 MiB headers: server RSS grew {grown / 2**20:.1f} MiB")
    assert grown < 16 * 2**20
    assert server.get("/healthz").status_code == 200  # and it keeps serving


def test_slow_and_idle_connections_are_closed_within_the_header_timeout(
        server_factory: Callable[..., Server]) -> None:
    server = server_factory(env={"IMGPROXY_HEADER_TIMEOUT": "1.5", "IMGPROXY_KEEP_ALIVE_TIMEOUT": "30"})
    # Slowloris: a header byte every 0.2 s, forever.
    sock = _connect(server)
    sock.sendall(b"GET /healthz HTTP/1.1\r\n")
    started = time.monotonic()
    answer = b""
    while time.monotonic() - started < 10:
        try:
            sock.sendall(b"X")
        except (BrokenPipeError, ConnectionResetError):
            break
        sock.settimeout(0.2)
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        answer += chunk
        if not chunk:
            break
    elapsed = time.monotonic() - started
    sock.close()
    assert elapsed < 1.5 + 1.0, elapsed
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    # Silent after connecting, and idle after a response (keep-alive is 30 s here).
    sock = _connect(server)
    started = time.monotonic()
    assert _read_all(sock) == b""
    assert time.monotonic() - started < 1.5 + 1.0
    sock.close()
    sock = _connect(server)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    started = time.monotonic()
    assert _read_all(sock).startswith(b"HTTP/1.1 200 ")
    assert time.monotonic() - started < 1.5 + 1.0
    sock.close()


def _responses(sock: socket.socket, count: int) -> list[tuple[bytes, bytes]]:
    """``count`` whole responses (head, body) read off a keep-alive connection."""
    buffer = b""
    out = []
    while len(out) < count:
        head_end = buffer.find(b"\r\n\r\n")
        if head_end >= 0:
            head = buffer[:head_end]
            length = int(next((line.split(b":")[1] for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), b"0"))
            end = head_end + 4 + (0 if head.startswith(b"HTTP/1.1 100 ") else length)
            if len(buffer) >= end:
                out.append((head, buffer[head_end + 4:end]))
                buffer = buffer[end:]
                continue
        chunk = sock.recv(65536)
        assert chunk, (out, buffer[:200])
        buffer += chunk
    return out


def test_head_and_body_go_out_together_for_every_kind_of_request(server_factory: Callable[..., Server]) -> None:
    """web/protocol.py holds a response's head for its body: a GET, a HEAD (no body
    ever comes), pipelined requests and ``Expect: 100-continue`` all still complete."""
    token = "ingest-token-0123456789abcdefghijklmnop"
    server = server_factory(env={"IMGPROXY_INGEST_TOKENS": token})
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "photos/42")
    url = server.url("thumbnail", "photos/42", "webp").removeprefix(server.base_url)
    full = server.get(url).content
    sock = _connect(server)
    sock.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    [(head, body)] = _responses(sock, 1)
    assert head.startswith(b"HTTP/1.1 200 ") and body == full
    sock.sendall(f"HEAD {url} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    sock.settimeout(5)
    head = sock.recv(65536)  # a head alone, without waiting for a body that never comes
    assert head.startswith(b"HTTP/1.1 200 ") and head.endswith(b"\r\n\r\n")
    sock.sendall(f"GET {url} HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    (_, body1), (head2, body2) = _responses(sock, 2)
    assert body1 == full and head2.startswith(b"HTTP/1.1 200 ") and b'"status"' in body2
    # 100 Continue goes out alone: the client sends its body only after it.
    photo = corpus("exif/mei__Nikon_D1X.jpg").read_bytes()
    sock.sendall((f"PUT /o/up/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                  f"Content-Length: {len(photo)}\r\nExpect: 100-continue\r\n\r\n").encode())
    [(head, _)] = _responses(sock, 1)
    assert head.startswith(b"HTTP/1.1 100 "), head
    sock.sendall(photo)
    [(head, body)] = _responses(sock, 1)
    assert head.startswith(b"HTTP/1.1 201 ") or head.startswith(b"HTTP/1.1 200 "), (head, body)
    sock.close()


def _flood(sock: socket.socket, seconds: float, limit: int = 256 * 2**20) -> int:
    """Header bytes sent until the server stops taking them for ``seconds``, or hangs up."""
    sock.setblocking(False)
    chunk = b"a" * 65536
    sent = 0
    while sent < limit:
        _, writable, _ = select.select([], [sock], [], seconds)
        if not writable:
            break
        try:
            sent += sock.send(chunk)
        except BlockingIOError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
    sock.setblocking(True)
    sock.settimeout(30)
    return sent


def test_pipelined_headers_are_capped_behind_a_response_in_flight(
        server_factory: Callable[..., Server], origin: str) -> None:
    """Bytes of the next request that wait behind a response (a slow cold render,
    an unread download) count against the header cap: past it the server stops
    reading, and the 431 follows that response, in order."""
    server = server_factory(originals=f"{origin}/img/", env={
        "IMGPROXY_HTTP_ALLOW_PRIVATE": "1", "IMGPROXY_DOWNLOAD_TIMEOUT": "3", "IMGPROXY_HEADER_TIMEOUT": "2"})
    pipelined = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: "
    before = _rss(server.proc.pid)
    # A cold render whose origin hangs (504 after 3 s), then an endless header.
    sock = _connect(server)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    slow = server.url("thumbnail", "slow").removeprefix(server.base_url)
    sock.sendall(f"GET {slow} HTTP/1.1\r\nHost: x\r\n\r\n".encode() + pipelined)
    sent = _flood(sock, seconds=2)
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 504 "), answer[:300]
    assert answer.count(b"HTTP/1.1 ") == 2 and b"HTTP/1.1 431 " in answer, answer[:1000]
    print(f"behind a render: {sent / 2**20:.1f} MiB of header sent")
    assert sent < 8 * 2**20, f"{sent / 2**20:.0f} MiB of header taken behind a render"
    # Behind a 16 MiB download the client does not read: the server stops reading too.
    sock = _connect(server)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
    link = original_url(server.key, "big-1", int(time.time()) + 600)
    sock.sendall(f"GET {link} HTTP/1.1\r\nHost: x\r\n\r\n".encode() + pipelined)
    sent = _flood(sock, seconds=2)
    grown = _rss(server.proc.pid) - before
    answer = _read_all(sock)
    sock.close()
    print(f"behind an unread download: {sent / 2**20:.1f} MiB of header sent, server RSS +{grown / 2**20:.1f} MiB")
    assert sent < 8 * 2**20, f"{sent / 2**20:.0f} MiB of header taken behind an unread download"
    assert grown < 32 * 2**20, f"server RSS grew {grown / 2**20:.0f} MiB"
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and len(rest) > 16 * 2**20, (head, len(rest))
    assert rest[16 * 2**20:].startswith(b"HTTP/1.1 431 "), rest[16 * 2**20:][:200]
    # A pipelined request's headers that are slow still time out, counted from the response before.
    sock = _connect(server)
    sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nX-Slow: a")
    started = time.monotonic()
    answer = _read_all(sock)
    sock.close()
    assert answer.startswith(b"HTTP/1.1 200 ") and b"HTTP/1.1 408 " in answer, answer[-300:]
    assert time.monotonic() - started < 2 + 1.5


def test_a_slow_upload_body_is_cut_with_408(server_factory: Callable[..., Server]) -> None:
    """An authenticated PUT whose body comes at a few bytes a second: 408 at body_timeout."""
    token = "ingest-token-0123456789abcdefghijklmnop"
    server = server_factory(env={"IMGPROXY_INGEST_TOKENS": token, "IMGPROXY_BODY_TIMEOUT": "2",
                                 "IMGPROXY_HEADER_TIMEOUT": "1"})
    photo = corpus("exif/mei__Nikon_D1X.jpg").read_bytes()
    sock = _connect(server)
    sock.sendall((f"PUT /o/up/slow HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
                  f"Content-Length: {len(photo)}\r\n\r\n").encode())
    started = time.monotonic()
    sock.settimeout(0.2)
    answer = b""
    for byte in photo[:100]:  # 5 bytes a second, past the header timeout too
        try:
            sock.sendall(bytes([byte]))
            answer += sock.recv(4096)
        except TimeoutError:
            continue
        except (BrokenPipeError, ConnectionResetError):
            break
        if answer:
            break
    sock.settimeout(5)
    answer += _read_all(sock)
    elapsed = time.monotonic() - started
    sock.close()
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"timeout"' in answer and b"connection: close" in answer
    assert 2 - 0.05 <= elapsed < 2 + 1.5, elapsed  # the event loop may fire a timer a clock tick early
    assert "Traceback" not in server.logs() and "ASGI" not in server.logs(), server.logs()
    assert not (server.originals / "up").exists() or not any((server.originals / "up").iterdir())
    # A body sent at once is unaffected.
    r = httpx.put(f"{server.base_url}/o/up/fast?render=none", content=photo,
                  headers={"authorization": f"Bearer {token}"}, timeout=30)
    assert r.status_code == 201, r.text


def test_the_uvicorn_internals_the_protocol_relies_on_are_there() -> None:
    """web/protocol.py subclasses uvicorn's private httptools protocol: fail here, by name,
    when an upgrade moves what it reads or overrides."""
    import inspect

    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol, RequestResponseCycle

    for name in ("data_received", "on_message_begin", "on_headers_complete", "on_message_complete",
                 "on_response_complete", "_unset_keepalive_if_required"):
        assert callable(getattr(HttpToolsProtocol, name, None)), name
    init = inspect.getsource(HttpToolsProtocol.__init__) + inspect.getsource(HttpToolsProtocol.connection_made)
    for attribute in ("self.pipeline", "self.flow", "self.cycle", "self.expect_100_continue", "self.loop"):
        assert attribute in init, attribute
    cycle = inspect.getsource(RequestResponseCycle.__init__)
    for attribute in ("self.response_started", "self.response_complete", "self.disconnected", "self.message_event"):
        assert attribute in cycle, attribute
