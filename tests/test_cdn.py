"""The README's nginx cache in front of a real server: what a CDN sees."""

import os
import shutil
import subprocess
import time

import httpx
import pytest
from conftest import add_original, corpus, free_port

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed")

CONF = """
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
    proxy_cache_path {tmp}/cache levels=1:2 keys_zone=img:8m max_size=1g inactive=30d use_temp_path=off;
    upstream imgproxy {{ server {upstream}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location /v/ {{
            proxy_pass http://imgproxy;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache img;
            proxy_cache_key $uri$is_args$args;
            proxy_cache_lock on;
            proxy_cache_use_stale error timeout updating http_503;
            add_header X-Cache $upstream_cache_status;
        }}
    }}
}}
"""


@pytest.fixture
def cdn(server, tmp_path):
    port = free_port()
    conf = tmp_path / "nginx.conf"
    # As root, nginx's workers would drop to 'nobody', who cannot enter pytest's tmp dirs.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(CONF.format(tmp=tmp_path, port=port, user=user,
                                upstream=server.base_url.removeprefix("http://")))
    proc = subprocess.Popen(["nginx", "-c", str(conf), "-p", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
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
        assert r.status_code == 403 and r.headers.get("x-cache") != "HIT"
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
