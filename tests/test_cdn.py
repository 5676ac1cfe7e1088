"""deploy/nginx.conf in front of a real server: what a CDN sees."""

import os
import subprocess
import time

import httpx
import pytest
from conftest import ROOT, add_original, corpus, free_port, require, spawn

pytestmark = pytest.mark.server


@pytest.fixture(autouse=True)
def _nginx() -> None:
    require("nginx")

SNIPPET = ROOT / "deploy" / "nginx.conf"
# The shipped snippet, with the cache path, listen address and upstream changed.
EDITS = {
    "/var/cache/nginx/img": "{tmp}/cache",
    "listen 80;": "listen 127.0.0.1:{port};",
    "server 127.0.0.1:8080;": "server {upstream};",
}
MAIN = """
{user}
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/imgproxy.conf;
}}
"""


@pytest.fixture
def server(server_factory, tmp_path, request):
    """The usual server, or one with the environment a test passes (``indirect`` parametrize)."""
    env = getattr(request, "param", {})
    if "IMGPROXY_FALLBACK" in env:
        add_original(tmp_path / "originals", corpus("exif/mei__Apple_iPhone_4.jpg"), env["IMGPROXY_FALLBACK"])
    return server_factory(env=env)


@pytest.fixture
def cdn(server, tmp_path):
    port = free_port()
    values = {"tmp": tmp_path, "port": port, "upstream": server.base_url.removeprefix("http://")}
    snippet = SNIPPET.read_text()
    for old, new in EDITS.items():
        assert snippet.count(old) == 1, f"deploy/nginx.conf no longer has {old!r} once"
        snippet = snippet.replace(old, new.format(**values))
    (tmp_path / "imgproxy.conf").write_text(snippet)
    conf = tmp_path / "nginx.conf"
    # As root, nginx's workers would drop to 'nobody', who cannot enter pytest's tmp dirs.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(MAIN.format(user=user, **values))
    proc = spawn(["nginx", "-c", str(conf), "-p", str(tmp_path)],
                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, (tmp_path / "error.log").read_text()
        try:
            httpx.get(base + "/", timeout=1)
            break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield base
    proc.terminate()
    proc.wait(10)


def test_cdn_caches_variants_for_a_year(server, cdn):
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "p")
    url = server.url("thumbnail", "p", "webp").replace(server.base_url, cdn)
    first, second = httpx.get(url), httpx.get(url)
    assert first.headers["x-cache"] == "MISS" and second.headers["x-cache"] == "HIT"
    assert first.content == second.content
    assert second.headers["cache-control"] == "public, max-age=31536000, immutable"
    # Only the miss reached imgproxy.
    assert server.metric("imgproxy_requests_total") == 1
    revalidate = httpx.get(url, headers={"If-None-Match": first.headers["etag"]})
    assert revalidate.status_code == 304


def test_cdn_never_caches_signature_failures(server, cdn):
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "p")
    url = server.url("thumbnail", "p", "webp").replace(server.base_url, cdn)
    forged = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    for _ in range(2):
        r = httpx.get(forged)
        assert r.status_code == 403 and r.headers["x-cache"] == "MISS"
    assert server.metric('imgproxy_requests_total{outcome="forbidden"}') == 2
    # A real URL after the forgeries is unaffected.
    assert httpx.get(url).status_code == 200


def test_cdn_herd_reaches_imgproxy_once(server, cdn):
    import asyncio

    add_original(server, corpus("large/mei__Issue_266.jpg"), "big")
    url = server.url("web", "big", "jpg").replace(server.base_url, cdn)

    async def herd():
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(client.get(url) for _ in range(20)))

    responses = asyncio.run(herd())
    assert {r.status_code for r in responses} == {200}
    assert server.metric("imgproxy_renders_total") == 1


def test_cdn_keeps_only_s_in_the_cache_key(server, cdn):
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "p")
    url = server.url("thumbnail", "p", "webp").replace(server.base_url, cdn)
    path, s = url.split("?")
    shared = httpx.get(f"{path}?utm_source=facebook&{s}&fbclid=x1")
    canonical = httpx.get(url)
    assert (shared.status_code, canonical.status_code) == (200, 200)
    assert (shared.headers["x-cache"], canonical.headers["x-cache"]) == ("MISS", "HIT")
    assert shared.headers["x-imgproxy-tier"] == "render" and "x-imgproxy-tier" not in canonical.headers
    assert server.metric("imgproxy_requests_total") == 1


def test_cdn_keeps_not_found_briefly(server, cdn):
    url = server.url("thumbnail", "missing", "webp").replace(server.base_url, cdn)
    first, second = httpx.get(url), httpx.get(url)
    assert (first.status_code, second.status_code) == (404, 404)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert server.metric("imgproxy_requests_total") == 1
    assert "proxy_cache_valid 400 404 413 415 422 10s;" in SNIPPET.read_text()


@pytest.mark.parametrize("server", [{"IMGPROXY_FALLBACK": "placeholder", "IMGPROXY_FALLBACK_STATUS": "200"}],
                         indirect=True)
def test_cdn_never_keeps_a_fallback(server, cdn):
    """A 200 fallback would otherwise be a year's object hiding the original once it arrives."""
    url = server.url("thumbnail", "late", "webp").replace(server.base_url, cdn)
    first, second = httpx.get(url), httpx.get(url)
    assert (first.status_code, first.headers["x-imgproxy-fallback"]) == (200, "1")
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "MISS")
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "late")
    arrived = httpx.get(url)
    assert arrived.status_code == 200 and "x-imgproxy-fallback" not in arrived.headers
