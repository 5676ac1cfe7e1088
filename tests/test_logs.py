"""web/logs.py: request ids, Date, and one access line per request, read from a real server's log."""

from __future__ import annotations

import email.utils
import json
import socket

import httpx
import pytest
from conftest import add_original, corpus


def access_lines(server) -> list[dict]:
    return [line for line in map(_json, server.logs().splitlines()) if line.get("logger") == "imgproxy.access"]


def _json(line: str) -> dict:
    try:
        return json.loads(line)
    except ValueError:
        return {}


@pytest.fixture
def json_server(server_factory):
    server = server_factory(env={"IMGPROXY_LOG_FORMAT": "json"})
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "photos/42")
    return server


def test_one_json_line_per_request_without_the_signature(json_server):
    server = json_server
    url = server.url("thumbnail", "photos/42", "webp")
    first = server.get(url, headers={"X-Request-ID": "req-1"})
    second = server.get(url)
    server.get(server.url("thumbnail", "photos/nope", "webp"), headers={"X-Request-ID": "req-3"})
    forged = server.get(url[:-3] + "AAA")
    server.stop()  # flushes the log
    lines = {line["request_id"]: line for line in access_lines(server)}
    render = lines["req-1"]
    assert render["method"] == "GET" and render["path"] == "/v/thumbnail/photos/42.webp"
    assert render["status"] == 200 and render["tier"] == "render"
    assert render["bytes"] == len(first.content) and render["ms"] > 0
    assert "error" not in render
    hit = lines[second.headers["x-request-id"]]
    assert hit["tier"] == "memory"
    assert lines["req-3"]["status"] == 404 and lines["req-3"]["error"] == "not_found"
    assert lines[forged.headers["x-request-id"]]["error"] == "forbidden"
    assert url.split("s=")[1] not in server.logs()  # no signature, no query in any line


def test_request_id_is_echoed_validated_or_minted(server):
    echoed = server.get("/healthz", headers={"X-Request-ID": "abc-DEF_123:4/5"})
    assert echoed.headers["x-request-id"] == "abc-DEF_123:4/5"
    for bad in ("x" * 65, "has space", "tab\there"):
        minted = server.get("/healthz", headers={"X-Request-ID": bad})
        assert minted.headers["x-request-id"] != bad and len(minted.headers["x-request-id"]) == 16
    a, b = server.get("/metrics"), server.get("/nothing-here")
    assert a.headers["x-request-id"] != b.headers["x-request-id"]
    # Every kind of response carries it: variant errors, Starlette's 404, a 405 too.
    assert "x-request-id" in httpx.post(server.url("thumbnail", "x")).headers
    assert "x-request-id" in server.get(server.url("thumbnail", "x")).headers


def test_text_format_and_access_log_off(server_factory):
    text = server_factory(env={"IMGPROXY_LOG_FORMAT": "text"})
    off = server_factory(env={"IMGPROXY_LOG_FORMAT": "json", "IMGPROXY_ACCESS_LOG": "false"})
    text.get("/metrics", headers={"X-Request-ID": "text-1"})
    off.get("/metrics", headers={"X-Request-ID": "off-1"})
    text.stop()
    off.stop()
    line = next(line for line in text.logs().splitlines() if "text-1" in line)
    assert "imgproxy.access: GET /metrics 200" in line and "request_id=text-1" in line
    assert "off-1" not in off.logs()


def test_errors_are_counted_by_category(json_server):
    server = json_server
    server.get(server.url("thumbnail", "photos/nope", "webp"))
    server.get("/no-such-path")
    server.get(server.url("thumbnail", "photos/42")[:-3] + "AAA")
    assert server.metric('imgproxy_errors_total{category="not_found"}') == 2
    assert server.metric('imgproxy_errors_total{category="forbidden"}') == 1


def test_last_modified_is_never_after_date(json_server):
    server = json_server
    # Fresh renders are stamped now; uvicorn's own Date lagged up to a second behind.
    for preset in ("thumbnail", "preview", "web", "small", "thumb-square"):
        for fmt in ("webp", "jpg"):
            r = server.get(server.url(preset, "photos/42", fmt))
            assert r.status_code == 200
            assert len(r.headers.get_list("date")) == 1
            date = email.utils.parsedate_to_datetime(r.headers["date"])
            assert email.utils.parsedate_to_datetime(r.headers["last-modified"]) <= date, (preset, fmt)


def test_a_text_line_cannot_be_forged_from_the_path(server_factory):
    server = server_factory(env={"IMGPROXY_LOG_FORMAT": "text"})
    forged = "/x%0a2026-01-01 00:00:00,000 INFO imgproxy.access: GET /v/forged 200%0d%e2%80%a8\\"
    assert server.get(forged.replace(" ", "%20"), headers={"X-Request-ID": "forge-1"}).status_code == 404
    server.stop()
    lines = [line for line in server.logs().splitlines() if "/v/forged" in line]
    assert len(lines) == 1 and "request_id=forge-1" in lines[0], lines
    assert "GET /x\\x0a2026-01-01 00:00:00,000 INFO imgproxy.access: GET /v/forged 200\\x0d\\u2028\\\\ 404" in lines[0]


def _raw_get(server, path: str, headers: bytes) -> bytes:
    """A request written byte for byte (httpx refuses control characters in a header)."""
    host, port = server.base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + headers + b"\r\n")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def test_client_is_the_peer_unless_the_peer_is_a_trusted_proxy(server_factory):
    untrusted = server_factory(env={"IMGPROXY_LOG_FORMAT": "json"})
    trusted = server_factory(env={"IMGPROXY_LOG_FORMAT": "json", "IMGPROXY_TRUSTED_PROXIES": "127.0.0.1/32"})
    forwarded = {"X-Forwarded-For": "198.51.100.7, 203.0.113.9", "User-Agent": "Mozilla/5.0 (test) ua-1"}
    untrusted.get("/healthz", headers={**forwarded, "X-Request-ID": "spoof-1"})
    untrusted.get("/healthz", headers={"X-Request-ID": "no-ua-1", "User-Agent": ""})
    trusted.get("/healthz", headers={**forwarded, "X-Request-ID": "proxied-1"})
    trusted.get("/healthz", headers={"X-Request-ID": "direct-1", "User-Agent": "x" * 500})
    untrusted.stop()
    trusted.stop()
    spoof = next(line for line in access_lines(untrusted) if line["request_id"] == "spoof-1")
    assert spoof["client"] == "127.0.0.1" and spoof["ua"] == "Mozilla/5.0 (test) ua-1"
    assert "203.0.113.9" not in untrusted.logs() and "198.51.100.7" not in untrusted.logs()
    assert next(line for line in access_lines(untrusted) if line["request_id"] == "no-ua-1")["ua"] == ""
    lines = {line["request_id"]: line for line in access_lines(trusted)}
    # The nearest address that is not a trusted proxy: the left one is whatever the client wrote.
    assert lines["proxied-1"]["client"] == "203.0.113.9"
    assert lines["direct-1"]["client"] == "127.0.0.1"  # no X-Forwarded-For: the peer
    assert lines["direct-1"]["ua"] == "x" * 200  # truncated


def test_a_text_line_cannot_be_forged_from_the_user_agent_or_forwarded_for(server_factory):
    server = server_factory(env={"IMGPROXY_LOG_FORMAT": "text", "IMGPROXY_TRUSTED_PROXIES": "127.0.0.1"})
    forged = b"2026-01-01 00:00:00,000 INFO imgproxy.access: GET /v/forged 200"
    # A line break in a header never reaches the app (the HTTP parser refuses it)...
    assert _raw_get(server, "/healthz", b"User-Agent: a\n" + forged + b"\r\n").startswith(b"HTTP/1.1 400")
    # ... what does (tab, C1 controls such as NEL, quotes, a backslash) is escaped.
    _raw_get(server, "/healthz", b"X-Request-ID: ua-1\r\nUser-Agent: a\t\x85\"b\\ " + forged + b"\r\n"
             b"X-Forwarded-For: 10.0.0.1 client=x\x85y\r\n")
    server.stop()
    lines = [line for line in server.logs().splitlines() if "/v/forged" in line]
    assert len(lines) == 1 and "request_id=ua-1" in lines[0], lines
    assert lines[0].endswith(' client=10.0.0.1\\x20client=x\\x85y ua="a\\x09\\x85"b\\\\ ' + forged.decode() + '"')
