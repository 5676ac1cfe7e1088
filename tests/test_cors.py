"""CORS (IMGPROXY_CORS_ORIGINS, web/cors.py): in process on /v/, /meta/ and /o/, and once
on a real server."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from conftest import KEY, ROOT, Server, add_original, corpus

from imgproxy import sign_url
from imgproxy.config import ConfigError, Settings, load_settings
from imgproxy.urls import meta_url, original_url
from imgproxy.web.app import App, create_app

SITE = "https://app.example.com"
OTHER = "https://evil.example.net"
ACAO = "access-control-allow-origin"


@asynccontextmanager
async def app_client(tmp_path: Path, origins: tuple[str, ...]) -> AsyncIterator[httpx.AsyncClient]:
    originals = tmp_path / "originals"
    add_original(originals, corpus("exif/mei__Nikon_D1X.jpg"), "photos/42")
    settings = Settings(keys=(KEY,), originals=originals.as_uri(), variants=(tmp_path / "v").as_uri(),
                        presets=str(ROOT / "config" / "presets.toml"), render_mode="thread",
                        render_threads=1, dev_key_file=str(tmp_path / "dev-key"), cors_origins=origins)
    app: App = create_app(settings)
    async with app.lifespan(app.starlette):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://imgproxy.test") as client:
            yield client


def urls() -> dict[str, str]:
    return {"variant": sign_url(KEY, "thumbnail", "photos/42", "webp"),
            "auto": sign_url(KEY, "thumbnail", "photos/42", "auto"),
            "meta": meta_url(KEY, "photos/42"),
            "original": original_url(KEY, "photos/42", int(time.time()) + 600),
            "missing": sign_url(KEY, "thumbnail", "photos/missing", "webp"),
            "forbidden": "/v/thumbnail/photos/42.webp?s=AAAA"}


async def test_off_by_default_sends_nothing_and_options_stays_a_405(tmp_path: Path) -> None:
    async with app_client(tmp_path, ()) as client:
        for name, path in urls().items():
            r = await client.get(path, headers={"origin": SITE})
            assert ACAO not in r.headers and "origin" not in r.headers.get("vary", "").lower(), name
        r = await client.options(urls()["variant"], headers={"origin": SITE, "access-control-request-method": "GET"})
        assert r.status_code == 405 and ACAO not in r.headers


async def test_any_origin_is_a_constant_star_without_vary(tmp_path: Path) -> None:
    async with app_client(tmp_path, ("*",)) as client:
        for name, path in urls().items():
            for _ in range(2):  # a render (or error), then a memory hit
                r = await client.get(path, headers={"origin": SITE})
                assert r.headers[ACAO] == "*", name
                assert "origin" not in r.headers.get("vary", "").lower(), name
        auto = await client.get(urls()["auto"], headers={"accept": "image/webp"})
        assert auto.headers["vary"] == "Accept" and auto.headers[ACAO] == "*"
        etag = auto.headers["etag"]
        cached = await client.get(urls()["variant"], headers={"if-none-match": etag})
        assert cached.status_code == 304 and cached.headers[ACAO] == "*"


async def test_a_list_echoes_a_listed_origin_with_vary_and_ignores_others(tmp_path: Path) -> None:
    async with app_client(tmp_path, (SITE, "http://localhost:3000")) as client:
        for name, path in urls().items():
            for _ in range(2):
                ok = await client.get(path, headers={"origin": SITE})
                assert ok.headers[ACAO] == SITE, name
                assert "Origin" in ok.headers["vary"], name
                other = await client.get(path, headers={"origin": OTHER})
                assert ACAO not in other.headers and "Origin" in other.headers["vary"], name
                bare = await client.get(path)  # no Origin: the same URL, so the same Vary
                assert ACAO not in bare.headers and "Origin" in bare.headers["vary"], name
        missing = await client.get(urls()["missing"], headers={"origin": SITE})
        assert missing.status_code == 404 and missing.json()["error"] == "not_found"  # readable by the page
        assert missing.headers[ACAO] == SITE
        auto = await client.get(urls()["auto"], headers={"origin": "http://localhost:3000", "accept": "image/avif"})
        assert auto.headers["vary"] == "Accept, Origin" and auto.headers[ACAO] == "http://localhost:3000"
        plain = await client.get(urls()["variant"], headers={"origin": SITE})
        assert plain.headers["vary"] == "Origin"
        cached = await client.get(urls()["variant"], headers={"origin": SITE, "if-none-match": plain.headers["etag"]})
        assert cached.status_code == 304 and cached.headers[ACAO] == SITE and cached.headers["vary"] == "Origin"
        redirect = await client.get(urls()["variant"] + "&x=1", headers={"origin": SITE})
        assert redirect.status_code == 308 and redirect.headers[ACAO] == SITE


async def test_preflight(tmp_path: Path) -> None:
    asked = {"origin": SITE, "access-control-request-method": "GET",
             "access-control-request-headers": "if-none-match, x-trace"}
    async with app_client(tmp_path, (SITE,)) as client:
        for name in ("variant", "meta", "original", "forbidden"):
            r = await client.options(urls()[name], headers=asked)
            assert r.status_code == 204 and r.content == b"", name
            assert r.headers[ACAO] == SITE and r.headers["vary"] == "Origin"
            assert r.headers["access-control-allow-methods"] == "GET, HEAD"
            assert r.headers["access-control-allow-headers"] == "if-none-match, x-trace"
            assert int(r.headers["access-control-max-age"]) > 0
        refused = await client.options(urls()["variant"], headers={**asked, "origin": OTHER})
        assert refused.status_code == 204
        assert not [h for h in refused.headers if h.startswith("access-control-")]
        long = await client.options(urls()["variant"], headers={**asked, "access-control-request-headers": "x" * 600})
        assert long.headers[ACAO] == SITE and "access-control-allow-headers" not in long.headers
        odd = await client.options(urls()["variant"], headers={**asked, "access-control-request-headers": "a;b"})
        assert "access-control-allow-headers" not in odd.headers
        elsewhere = await client.options("/healthz", headers=asked)  # only the three endpoints
        assert elsewhere.status_code != 204
    async with app_client(tmp_path / "any", ("*",)) as client:
        r = await client.options(urls()["variant"], headers=asked)
        assert r.status_code == 204 and r.headers[ACAO] == "*" and "vary" not in r.headers


@pytest.mark.parametrize("value", ["https://app.example.com/", "app.example.com", "*,https://a.example.com",
                                   "https://App.example.com", "ftp://a.example.com", "https://a.example.com:x"])
def test_bad_origins_stop_start_up(value: str) -> None:
    with pytest.raises(ConfigError, match="IMGPROXY_CORS_ORIGINS"):
        load_settings({"IMGPROXY_CORS_ORIGINS": value, "IMGPROXY_CONFIG": "/dev/null"})


def test_good_origins() -> None:
    s = load_settings({"IMGPROXY_CORS_ORIGINS": "https://a.example.com, http://localhost:3000",
                       "IMGPROXY_CONFIG": "/dev/null"})
    assert s.cors_origins == ("https://a.example.com", "http://localhost:3000")


def test_a_real_server(server_factory: Callable[..., Server]) -> None:
    server = server_factory(env={"IMGPROXY_CORS_ORIGINS": SITE})
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "photos/42")
    url = server.url("thumbnail", "photos/42", "webp")
    first = server.get(url, headers={"origin": SITE})
    assert first.status_code == 200 and first.headers[ACAO] == SITE and first.headers["vary"] == "Origin"
    hit = server.get(url, headers={"origin": OTHER})
    assert hit.headers["x-imgproxy-tier"] == "memory" and ACAO not in hit.headers
    missing = server.get(server.url("thumbnail", "photos/missing", "webp"), headers={"origin": SITE})
    assert missing.status_code == 404 and missing.headers[ACAO] == SITE
    preflight = httpx.options(url, headers={"origin": SITE, "access-control-request-method": "GET"})
    assert preflight.status_code == 204 and preflight.headers[ACAO] == SITE
