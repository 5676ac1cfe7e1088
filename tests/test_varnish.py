"""deploy/varnish.vcl in Debian's real varnishd, in front of a real server."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, Server, add_original, corpus, free_port, require, spawn

pytestmark = pytest.mark.server


@pytest.fixture(autouse=True)
def _varnishd() -> None:
    require("varnishd")

VCL = ROOT / "deploy" / "varnish.vcl"
ERROR_TTL = int(re.search(r"set beresp\.ttl = (\d+)s;\s+# ERROR_TTL", VCL.read_text())[1])


class Varnish:
    def __init__(self, base_url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
        self.base_url, self.proc, self.log = base_url, proc, log

    def url(self, server: Server, preset: str, id: str, fmt: str = "webp") -> str:
        return server.url(preset, id, fmt).replace(server.base_url, self.base_url)

    def get(self, url: str, **kw: object) -> httpx.Response:
        return httpx.get(url, timeout=60, **kw)  # type: ignore[arg-type]


@pytest.fixture
def varnish(server: Server, tmp_path: Path) -> Iterator[Varnish]:
    host, port = server.base_url.removeprefix("http://").split(":")
    text = VCL.read_text()
    vcl = text.replace('.host = "127.0.0.1";', f'.host = "{host}";').replace('.port = "8080";', f'.port = "{port}";')
    assert vcl.count(port) >= 1 and vcl != text, "the VCL's backend is no longer 127.0.0.1:8080"
    (tmp_path / "varnish.vcl").write_text(vcl)
    listen = free_port()
    log = tmp_path / "varnishd.log"
    # -F: foreground, so the test owns the process; -j none: as root, stay root (the default
    # jail drops to the 'vcache' user, who cannot enter pytest's private tmp directories).
    proc = spawn(
        ["varnishd", "-F", "-j", "none", "-a", f"127.0.0.1:{listen}", "-f", str(tmp_path / "varnish.vcl"),
         "-n", str(tmp_path / "varnish"), "-s", "malloc,64m"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{listen}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"varnishd did not start:\n{log.read_text(errors='replace')}")
        try:
            httpx.get(base + "/healthz", timeout=2)
            break
        except httpx.HTTPError:
            time.sleep(0.1)
    yield Varnish(base, proc, log)
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_second_request_is_a_hit_and_reaches_imgproxy_once(server, varnish):
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "p")
    url = varnish.url(server, "thumbnail", "p")
    first, second = varnish.get(url), varnish.get(url)
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.headers["x-cache"], second.headers["x-cache"]) == ("MISS", "HIT")
    assert first.content == second.content
    assert second.headers["cache-control"] == "public, max-age=31536000, immutable"
    # The tier is true on the miss and would be stale on a hit, so a hit has none.
    assert first.headers["x-imgproxy-tier"] == "render"
    assert "x-imgproxy-tier" not in second.headers and "x-url" not in second.headers
    assert server.metric("imgproxy_requests_total") == 1


def test_only_s_is_kept_in_the_cache_key(server, varnish):
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "p")
    url = varnish.url(server, "thumbnail", "p")
    path, s = url.split("?")
    shared = varnish.get(f"{path}?utm_source=facebook&{s}&fbclid=x1")
    canonical = varnish.get(url)
    other = varnish.get(f"{path}?{s}&utm_medium=mail")
    assert [r.status_code for r in (shared, canonical, other)] == [200, 200, 200]
    assert [r.headers["x-cache"] for r in (shared, canonical, other)] == ["MISS", "HIT", "HIT"]
    assert server.metric("imgproxy_requests_total") == 1
    # Without `s` the query goes entirely, and imgproxy says 403 (not cached).
    assert varnish.get(f"{path}?utm_source=x").status_code == 403


def test_bad_signature_is_never_cached(server, varnish):
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "p")
    url = varnish.url(server, "thumbnail", "p")
    forged = url[:-3] + ("AAA" if not url.endswith("AAA") else "BBB")
    for _ in range(3):
        r = varnish.get(forged)
        assert r.status_code == 403 and r.headers["x-cache"] == "MISS"
    assert server.metric('imgproxy_requests_total{outcome="forbidden"}') == 3
    assert varnish.get(url).status_code == 200


@pytest.mark.slow
def test_not_found_is_cached_only_briefly(server, varnish):
    url = varnish.url(server, "thumbnail", "missing")
    first = varnish.get(url)
    assert first.status_code == 404 and first.headers["x-cache"] == "MISS"
    assert first.headers["cache-control"] == f"public, max-age={ERROR_TTL}"
    second = varnish.get(url)
    assert second.status_code == 404 and second.headers["x-cache"] == "HIT"
    assert server.metric("imgproxy_requests_total") == 1
    time.sleep(ERROR_TTL + 1.5)
    # The original was uploaded meanwhile: after the short TTL the edge asks again.
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "missing")
    third = varnish.get(url)
    assert third.status_code == 200 and third.headers["x-cache"] == "MISS"
    assert server.metric("imgproxy_requests_total") == 2


def test_if_none_match_is_answered_304(server, varnish):
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "p")
    url = varnish.url(server, "web", "p", "jpg")
    # A client that already holds the bytes, on a URL the edge has never seen: Varnish
    # fetches the whole variant (so it can keep it) and still answers 304.
    etag = httpx.get(url.replace(varnish.base_url, server.base_url)).headers["etag"]
    cold = varnish.get(url, headers={"If-None-Match": etag})
    assert cold.status_code == 304 and cold.content == b""
    warm = varnish.get(url, headers={"If-None-Match": etag})
    assert warm.status_code == 304 and warm.headers["x-cache"] == "HIT" and warm.headers["etag"] == etag
    assert varnish.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    assert server.metric("imgproxy_requests_total") == 2  # ours direct, and Varnish's one fetch


def test_head_fills_the_cache_for_get(server, varnish):
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "p")
    url = varnish.url(server, "thumbnail", "p", "png")
    head = httpx.head(url, timeout=60)
    assert head.status_code == 200 and head.content == b""
    get = varnish.get(url)
    assert get.headers["x-cache"] == "HIT" and get.content.startswith(b"\x89PNG")
    assert server.metric("imgproxy_requests_total") == 1


@pytest.mark.slow
def test_herd_on_one_cold_variant_reaches_imgproxy_once(server, varnish):
    add_original(server, corpus("large/mei__Issue_266.jpg"), "big")
    url = varnish.url(server, "web", "big", "avif")

    async def herd() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            return await asyncio.gather(*(client.get(url) for _ in range(50)))

    responses = asyncio.run(herd())
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert server.metric("imgproxy_renders_total") == 1
    reached = server.metric("imgproxy_requests_total")
    print(f"\nherd of 50 through Varnish: {reached:.0f} request(s) reached imgproxy, 1 render")
    assert reached <= 2


def test_purge_and_ban_drop_cached_variants(server, varnish):
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "p")
    thumb, web = varnish.url(server, "thumbnail", "p"), varnish.url(server, "web", "p")
    for url in (thumb, web):
        varnish.get(url)
        assert varnish.get(url).headers["x-cache"] == "HIT"
    assert httpx.request("PURGE", thumb).status_code == 200
    assert varnish.get(thumb).headers["x-cache"] == "MISS"
    assert varnish.get(web).headers["x-cache"] == "HIT"
    # After editing the `web` preset: drop every URL below /v/web/.
    assert httpx.request("BAN", varnish.base_url + "/v/web/").status_code == 200
    assert varnish.get(web).headers["x-cache"] == "MISS"
    assert varnish.get(thumb).headers["x-cache"] == "HIT"


def test_metrics_are_not_served_through_the_edge(server, varnish):
    assert varnish.get(varnish.base_url + "/metrics").status_code == 404


def _purge(server: Server, *args: str, cdn: str) -> subprocess.CompletedProcess[str]:
    env = {**server.env, "IMGPROXY_CDN_PURGE": cdn}
    return subprocess.run([sys.executable, "-m", "imgproxy", "purge", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=60)


def test_purge_cdn_bans_every_url_of_one_original_by_its_surrogate_key(server, varnish):
    photo = corpus("exif/mei__Nikon_D1X.jpg")
    add_original(server, photo, "gallery/a")
    add_original(server, photo, "gallery/b")
    a = [varnish.url(server, "thumbnail", "gallery/a"), varnish.url(server, "web", "gallery/a", "jpg")]
    b = varnish.url(server, "thumbnail", "gallery/b")
    for url in (*a, b):
        assert varnish.get(url).headers["x-cache"] == "MISS"
        hit = varnish.get(url)
        assert hit.headers["x-cache"] == "HIT" and "surrogate-key" not in hit.headers
    assert server.metric("imgproxy_requests_total") == 3

    out = _purge(server, "gallery/a", "--cdn", cdn=f"varnish:{varnish.base_url}")
    assert out.returncode == 0, out.stderr
    assert f"purged varnish:{varnish.base_url} by 1 surrogate keys" in out.stdout
    assert "purged 2 variants of 1 ids" in out.stdout  # the store's, as without --cdn

    again = [varnish.get(url) for url in a]
    assert [(r.status_code, r.headers["x-cache"]) for r in again] == [(200, "MISS")] * 2
    # Both reached imgproxy (whose memory tier still holds them: purge reaches no server's memory).
    assert {r.headers["x-imgproxy-tier"] for r in again} <= {"memory", "store", "render"}
    assert server.metric("imgproxy_requests_total") == 5
    still = varnish.get(b)
    assert still.headers["x-cache"] == "HIT"
    assert server.metric("imgproxy_requests_total") == 5
    print("\nafter imgproxy purge gallery/a --cdn: "
          + ", ".join(f"{r.url.path} {r.status_code} {r.headers['x-cache']}" for r in (*again, still))
          + f"; imgproxy saw {server.metric('imgproxy_requests_total'):.0f} requests in all")


def test_purge_cdn_failure_says_so_after_purging_the_store(server, varnish):
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "p")
    assert varnish.get(varnish.url(server, "thumbnail", "p")).status_code == 200
    down = f"varnish:http://127.0.0.1:{free_port()}"
    out = _purge(server, "p", "--cdn", cdn=down)
    assert out.returncode == 1 and "purged 1 variants of 1 ids" in out.stdout
    assert f"CDN purge failed (the store's variants are deleted): {down}: ConnectError" in out.stderr, out.stderr
    # The VCL refuses keys that are not imgproxy's (they go into a ban's regex).
    bad = httpx.request("BAN", varnish.base_url + "/", headers={"X-Purge-Key": "o-.*"})
    assert bad.status_code == 400
