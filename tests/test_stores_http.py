"""HTTP origins: tiny ASGI apps (tests/origins.py) on a real uvicorn on 127.0.0.1."""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpcore
import httpx
import pytest
from conftest import Server

from imgproxy.stores.guard import BlockedAddress, GuardedBackend, allowed
from imgproxy.stores.http import HttpOriginals
from imgproxy.stores.spool import Spool

PHOTO = "exif/mei__Apple_iPhone_4.jpg"


def origin_requests(origin: str) -> list[str]:
    return list(httpx.get(origin + "/stats").json()["requests"])


@pytest.fixture(scope="module")
def server(origin: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    from conftest import start_server

    server = start_server(
        tmp_path_factory.mktemp("http-server"),
        originals=f"{origin}/img/,{origin}/more/",
        env={"IMGPROXY_HTTP_ALLOW_PRIVATE": "1", "IMGPROXY_DOWNLOAD_TIMEOUT": "1.5",
             "IMGPROXY_MAX_SOURCE_BYTES": str(4 * 1024 * 1024)},
    )
    yield server
    server.stop()


@pytest.mark.parametrize(("id", "status", "error"), [
    ("photo", 200, None),  # /img/photo (404), then /img/photo.jpg
    ("plain", 200, None),  # found as given
    ("second", 200, None),  # below the second prefix: /more/second.png
    ("redirect-inside", 200, None),
    ("missing", 404, "not_found"),
    ("broken", 502, "bad_gateway"),
    ("liar", 502, "bad_gateway"),
    ("huge", 413, "too_large"),
    ("slow", 504, "timeout"),
    ("drip", 504, "timeout"),
    ("redirect-outside", 502, "bad_gateway"),
    ("redirect-private", 502, "bad_gateway"),  # outside the prefixes here; see below
])
def test_origin_answers_map_to_statuses(server: Server, id: str, status: int, error: str | None) -> None:
    started = time.monotonic()
    response = server.get(server.url("thumbnail", id, "webp"))
    assert response.status_code == status, response.text
    assert time.monotonic() - started < 10
    if error:
        assert response.json()["error"] == error
        assert response.headers["cache-control"] == ("no-store" if status >= 500 else response.headers["cache-control"])


@pytest.mark.parametrize("id", ["broken", "liar", "redirect-outside", "redirect-escaped-dots"])
def test_502_bodies_carry_no_host_status_or_library_text(server: Server, id: str) -> None:
    response = server.get(server.url("thumbnail", id, "webp"))
    assert response.status_code == 502
    body = response.json()
    assert set(body) == {"error", "detail"}, body
    assert not any(leak in body["detail"] for leak in ("127.0.0.1", "500", "peer", "incomplete", "http")), body


def test_lying_content_length_is_a_clear_error(server: Server) -> None:
    body = server.get(server.url("small", "liar", "webp")).json()
    assert "truncated" in body["detail"]


def test_where_an_id_was_found_is_remembered(server: Server, origin: str) -> None:
    for preset in ("thumbnail", "small"):
        assert server.get(server.url(preset, "remember", "webp")).status_code == 200
    requests = origin_requests(origin)
    # First miss: remember, remember.jpg, remember.jpeg, remember.png; then straight to .png.
    assert requests.count("/img/remember") == 1
    assert requests.count("/img/remember.png") == 2


def test_redirects_never_leave_the_prefixes(server: Server, origin: str) -> None:
    server.get(server.url("small", "redirect-outside", "webp"))
    assert "/secret/photo.jpg" not in origin_requests(origin)
    assert "refused origin URL outside the allowed prefixes" in server.logs()


@pytest.mark.parametrize("how", ["dots", "upper", "slash", "backslash", "pct5c"])
def test_redirects_cannot_hide_a_way_out_of_the_prefix(server: Server, origin: str, how: str) -> None:
    """The origin would resolve ``/img/%2e%2e/private/secret.png`` to ``/private/secret.png``."""
    before = len(origin_requests(origin))
    response = server.get(server.url("small", f"redirect-escaped-{how}", "webp"))
    assert response.status_code == 502, response.text
    assert response.json() == {"error": "bad_gateway",
                               "detail": "the origin redirected outside the allowed prefixes"}
    assert origin_requests(origin)[before:] == [f"/img/redirect-escaped-{how}"]


def test_redirect_with_unreserved_escapes_is_normalised_and_followed(server: Server, origin: str) -> None:
    assert server.get(server.url("small", "redirect-unreserved", "webp")).status_code == 200
    assert origin_requests(origin)[-1] == "/img/photo.jpg"


def test_redirect_to_a_malformed_url_is_a_502(server: Server) -> None:
    response = server.get(server.url("small", "redirect-malformed", "webp"))
    assert response.status_code == 502, response.text
    assert response.json()["error"] == "bad_gateway"


def test_redirect_to_a_metadata_address_is_refused_before_connecting(
    origin: str, server_factory: Callable[..., Server]
) -> None:
    """Even with the metadata address on the allow-list, the guard refuses to dial it."""
    server = server_factory(originals=f"{origin}/img/,http://169.254.169.254/img/",
                            env={"IMGPROXY_HTTP_ALLOW_PRIVATE": "1"})
    response = server.get(server.url("small", "redirect-private", "webp"))
    assert response.status_code == 502
    assert response.json()["detail"] == "the origin's address is not allowed"
    assert "refused to connect to origin 169.254.169.254" in server.logs()


def test_loopback_origin_refused_unless_allowed(
    origin: str, server_factory: Callable[..., Server]
) -> None:
    strict = server_factory(originals=f"{origin}/img/")
    before = len(origin_requests(origin))
    response = strict.get(strict.url("thumbnail", "plain", "webp"))
    assert response.status_code == 502
    assert response.json()["detail"] == "the origin's address is not allowed"
    assert len(origin_requests(origin)) == before  # nothing reached the origin
    assert set(response.json()) == {"error", "detail"}  # the host is in the log only
    assert "refused to connect to origin 127.0.0.1" in strict.logs()


def test_ids_stay_below_the_prefix() -> None:
    store = HttpOriginals(httpx.AsyncClient(), ["http://h.example/img/"], 1000, 1.0, Spool(1 << 20))
    assert store.allowed("http://h.example/img/a/b.jpg")
    assert not store.allowed("http://h.example/img/../secret.jpg")
    assert not store.allowed("http://h.example/imgx/a.jpg")
    assert not store.allowed("http://other.example/img/a.jpg")
    assert not store.allowed("https://h.example/img/a.jpg")
    for hidden in ("%2e%2e/secret.jpg", "%2E%2E/secret.jpg", "..%2fsecret.jpg", "..%2Fsecret.jpg",
                   "..%5csecret.jpg", "..%5Csecret.jpg", "..\\secret.jpg", "a\\b.jpg", "%2e/a.jpg"):
        assert not store.allowed(f"http://h.example/img/{hidden}"), hidden
    assert store.allowed("http://h.example/img/%61/b.jpg")  # %61 is "a"
    assert not store.allowed("http://h.example/%69mg/../secret.jpg")
    assert not store.allowed("http://h.example/img/%7e/../../secret.jpg")
    assert not store.allowed("http://[::1/img/a.jpg")
    assert list(store.candidates("a/b"))[:3] == [
        "http://h.example/img/a/b", "http://h.example/img/a/b.jpg", "http://h.example/img/a/b.jpeg",
    ]


@pytest.mark.parametrize(("address", "default", "development"), [
    ("93.184.216.34", True, True),
    ("2606:2800:220:1:248:1893:25c8:1946", True, True),
    ("127.0.0.1", False, True),
    ("::1", False, True),
    ("::ffff:127.0.0.1", False, True),
    ("10.0.0.1", False, True),
    ("192.168.1.1", False, True),
    ("169.254.169.254", False, False),
    ("fd00:ec2::254", False, False),
    ("fe80::1", False, False),
    ("0.0.0.0", False, False),
    ("224.0.0.1", False, False),
    # IPv4 reached through IPv6 translators and tunnels: judged by the IPv4 rules
    ("64:ff9b::a9fe:a9fe", False, False),  # NAT64 of 169.254.169.254
    ("64:ff9b::7f00:1", False, True),
    ("64:ff9b::a00:1", False, True),
    ("64:ff9b::5db8:d822", True, True),  # NAT64 of 93.184.216.34
    # RFC 8215 local-use NAT64: where the IPv4 address sits is the translator's choice
    ("64:ff9b:1::a9fe:a9fe", False, False),  # /96 layout: 169.254.169.254
    ("64:ff9b:1:a9fe:a9:fe00::", False, False),  # /48 layout: 169.254.169.254
    ("64:ff9b:1::5db8:d822", False, False),
    ("64:ff9b::1:a9fe:a9fe", False, False),  # in 64:ff9b::/32, outside the well-known /96
    ("2002:7f00:1::", False, True),  # 6to4 of 127.0.0.1
    ("2002:a9fe:a9fe::1", False, False),
    ("2002:c0a8:101::", False, True),
    ("2002:5db8:d822::1", True, True),
    ("::127.0.0.1", False, True),  # IPv4-compatible
    ("::169.254.169.254", False, False),
    ("::ffff:0:7f00:1", False, True),  # IPv4-translated
    ("::ffff:0:a9fe:a9fe", False, False),
    ("::ffff:169.254.169.254", False, False),
    ("::", False, False),
    ("fec0::1", False, False),  # deprecated site-local
    ("168.63.129.16", False, False),  # Azure's host endpoint
    ("192.0.0.1", False, False),
    ("192.0.0.9", False, False),
    ("0.0.0.1", False, False),
])
def test_address_rules(address: str, default: bool, development: bool) -> None:
    ip = ipaddress.ip_address(address)
    assert allowed(ip, allow_private=False) is default
    assert allowed(ip, allow_private=True) is development


class _Recorder(httpcore.AsyncNetworkBackend):
    def __init__(self) -> None:
        self.dialled: list[str] = []

    async def connect_tcp(self, host: str, port: int, *args: Any, **kw: Any) -> httpcore.AsyncNetworkStream:
        self.dialled.append(host)
        raise httpcore.ConnectError("recorder never connects")


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "10.0.0.1", "169.254.169.254", "[::1]",
                                  "[64:ff9b::a9fe:a9fe]", "[64:ff9b:1::a9fe:a9fe]", "[2002:7f00:1::]",
                                  "168.63.129.16"])
async def test_guard_refuses_before_dialling(host: str) -> None:
    inner = _Recorder()
    backend = GuardedBackend(allow_private=False, inner=inner)
    with pytest.raises(BlockedAddress):
        await backend.connect_tcp(host.strip("[]"), 80, timeout=2)
    assert inner.dialled == []


async def test_guard_dials_the_checked_address_not_the_name() -> None:
    inner = _Recorder()
    backend = GuardedBackend(allow_private=True, inner=inner)
    with pytest.raises(httpcore.ConnectError):
        await backend.connect_tcp("localhost", 80, timeout=2)
    assert inner.dialled and all(ipaddress.ip_address(h).is_loopback for h in inner.dialled)


def test_guarded_client_never_connects_to_a_blocked_listener(tmp_path: Path) -> None:
    """End to end: a loopback listener sees no connection from the guarded client."""
    from imgproxy.config import Settings
    from imgproxy.stores.clients import Clients

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.5)
        port = listener.getsockname()[1]

        async def fetch() -> None:
            clients = Clients(Settings(http_allow_private=False))
            try:
                with pytest.raises(BlockedAddress):
                    await clients.http().get(f"http://localhost:{port}/x")
            finally:
                await clients.aclose()

        import asyncio

        asyncio.run(fetch())
        with pytest.raises(TimeoutError):
            listener.accept()


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_failed_originals_do_not_stay_in_memory(server: Server) -> None:
    """40 distinct 4 MiB originals that fail to decode: the server keeps what failed, not the bytes."""
    def fetch_all(start: int) -> None:
        for n in range(start, start + 40):
            r = httpx.get(server.url("thumbnail", f"junk-{n}"), timeout=30)
            assert r.status_code == 422, r.text

    fetch_all(0)  # warm up: allocator arenas, worker sockets
    before = _rss(server.proc.pid)
    fetch_all(1000)
    grown = _rss(server.proc.pid) - before
    print(f"server RSS grew {grown / 2**20:.1f} MiB over 40 failed 4 MiB originals")
    assert grown < 40 * 2**20
