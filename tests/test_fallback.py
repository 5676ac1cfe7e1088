"""The fallback image (IMGPROXY_FALLBACK, IMGPROXY_FALLBACK_STATUS): in process on /v/, and once
on a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import pyvips
from conftest import KEY, ROOT, Server, add_original, corpus

from imgproxy import sign_url
from imgproxy.config import ConfigError, Settings, load_settings
from imgproxy.variants.services import open_services
from imgproxy.web.app import App, create_app

PHOTO = "exif/mei__Nikon_D1X.jpg"
PLACEHOLDER = "exif/mei__Apple_iPhone_4.jpg"
BROKEN = "corrupt/sharp__corrupt-header.jpg"


def settings(tmp_path: Path, **kw: Any) -> Settings:
    originals = tmp_path / "originals"
    add_original(originals, corpus(PHOTO), "photos/42")
    add_original(originals, corpus(PLACEHOLDER), "site/placeholder")
    add_original(originals, corpus(BROKEN), "photos/broken")
    kw.setdefault("variants", (tmp_path / "v").as_uri())
    return Settings(keys=(KEY,), originals=originals.as_uri(), presets=str(ROOT / "config" / "presets.toml"),
                    render_mode="thread", render_threads=1, dev_key_file=str(tmp_path / "dev-key"), **kw)


@asynccontextmanager
async def app_client(tmp_path: Path, **kw: Any) -> AsyncIterator[httpx.AsyncClient]:
    app: App = create_app(settings(tmp_path, **{"fallback": "site/placeholder", **kw}))
    async with app.lifespan(app.starlette):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://imgproxy.test") as client:
            yield client


def url(id: str, fmt: str = "webp", preset: str = "thumbnail") -> str:
    return sign_url(KEY, preset, id, fmt)


async def test_a_missing_original_gets_the_fallback_with_its_404(tmp_path: Path) -> None:
    async with app_client(tmp_path) as client:
        placeholder = await client.get(url("site/placeholder"))
        first = await client.get(url("photos/missing"))
        assert first.status_code == 404 and first.headers["content-type"] == "image/webp"
        assert first.content == placeholder.content  # the same variant: rendered once, for both
        assert first.headers["x-imgproxy-fallback"] == "1" and first.headers["x-imgproxy-tier"] == "memory"
        assert first.headers["cache-control"] == "public, max-age=10"  # IMGPROXY_NOT_FOUND_MAX_AGE
        assert "etag" not in first.headers and "last-modified" not in first.headers
        assert "x-imgproxy-fallback" not in placeholder.headers
        head = await client.head(url("photos/other-missing"))
        assert head.status_code == 404 and head.content == b"" and int(head.headers["content-length"]) > 0


async def test_the_fallback_renders_once_per_preset_and_format(tmp_path: Path) -> None:
    async with app_client(tmp_path) as client:
        for fmt, mime in (("webp", "image/webp"), ("png", "image/png")):
            first = await client.get(url("photos/missing", fmt))
            assert (first.status_code, first.headers["x-imgproxy-tier"]) == (404, "render")
            again = await client.get(url("photos/gone", fmt))  # another missing id: the same variant
            assert (again.status_code, again.headers["x-imgproxy-tier"]) == (404, "memory")
            assert again.content == first.content and again.headers["content-type"] == mime
        preview = await client.get(url("photos/missing", "jpg", "preview"))
        image = pyvips.Image.new_from_buffer(preview.content, "")
        thumb = pyvips.Image.new_from_buffer(first.content, "")
        assert max(image.width, image.height) > max(thumb.width, thumb.height)  # the requested preset
    async with app_client(tmp_path / "restart", variants=(tmp_path / "v").as_uri()) as client:
        r = await client.get(url("photos/missing", "png"))
        assert (r.status_code, r.headers["x-imgproxy-tier"]) == (404, "store")  # stored like any variant


async def test_a_broken_original_gets_the_fallback_with_its_422(tmp_path: Path) -> None:
    async with app_client(tmp_path) as client:
        for _ in range(2):  # a render that fails, then the remembered failure
            r = await client.get(url("photos/broken"))
            assert (r.status_code, r.headers["x-imgproxy-fallback"]) == (422, "1")
            assert r.headers["content-type"] == "image/webp" and r.content[:4] == b"RIFF"
            assert r.headers["cache-control"] == "public, max-age=10"


async def test_status_200_when_configured(tmp_path: Path) -> None:
    async with app_client(tmp_path, fallback_status="200") as client:
        for id in ("photos/missing", "photos/broken"):
            r = await client.get(url(id))
            assert (r.status_code, r.headers["x-imgproxy-fallback"]) == (200, "1"), id
            assert r.headers["cache-control"] == "public, max-age=10"


async def test_auto_negotiates_the_fallback(tmp_path: Path) -> None:
    async with app_client(tmp_path) as client:
        avif = await client.get(url("photos/missing", "auto"), headers={"accept": "image/avif"})
        assert (avif.status_code, avif.headers["content-type"], avif.headers["vary"]) == (404, "image/avif", "Accept")
        # Neither AVIF nor WebP: the alpha probe fails on the missing original, then asks the fallback.
        plain = await client.get(url("photos/missing", "auto"), headers={"accept": "*/*"})
        assert (plain.status_code, plain.headers["content-type"]) == (404, "image/jpeg")


async def test_what_is_never_replaced(tmp_path: Path) -> None:
    async with app_client(tmp_path) as client:
        forged = await client.get("/v/thumbnail/photos/missing.webp?s=AAAA")
        assert forged.status_code == 403 and forged.json()["error"] == "forbidden"
        bad = await client.get("/v/thumbnail/photos/missing.bmp?s=AAAA")
        assert bad.status_code == 400 and bad.json()["error"] == "bad_request"
        preset = await client.get(url("photos/missing", preset="nope"))
        assert preset.status_code == 404 and preset.json()["error"] == "not_found"
        real = await client.get(url("photos/42"))
        assert real.status_code == 200 and "x-imgproxy-fallback" not in real.headers


async def test_cors_on_the_fallback(tmp_path: Path) -> None:
    async with app_client(tmp_path, cors_origins=("https://app.example.com",)) as client:
        r = await client.get(url("photos/missing"), headers={"origin": "https://app.example.com"})
        assert r.status_code == 404 and r.headers["access-control-allow-origin"] == "https://app.example.com"
        assert r.headers["vary"] == "Origin"


async def test_without_a_fallback_errors_stay_json(tmp_path: Path) -> None:
    async with app_client(tmp_path, fallback="") as client:
        r = await client.get(url("photos/missing"))
        assert r.status_code == 404 and r.json()["error"] == "not_found"


@pytest.mark.parametrize(("fallback", "why"), [("site/nothing", "no such original"),
                                                ("photos/broken", ""), ("../etc", "")])
async def test_start_up_refuses_a_fallback_that_is_missing_or_broken(tmp_path: Path, fallback: str,
                                                                    why: str) -> None:
    with pytest.raises(ConfigError, match=f"IMGPROXY_FALLBACK: '{fallback}'.*{why}"):
        async with open_services(settings(tmp_path, fallback=fallback)):
            pass


def test_fallback_status_is_keep_or_200() -> None:
    with pytest.raises(ConfigError, match="IMGPROXY_FALLBACK_STATUS"):
        load_settings({"IMGPROXY_FALLBACK_STATUS": "302", "IMGPROXY_CONFIG": "/dev/null"})


def test_a_real_server(server_factory: Callable[..., Server], tmp_path: Path) -> None:
    add_original(tmp_path / "originals", corpus(PLACEHOLDER), "site/placeholder")
    server = server_factory(env={"IMGPROXY_FALLBACK": "site/placeholder"})
    first = server.get(server.url("thumbnail", "photos/missing", "webp"))
    assert (first.status_code, first.headers["x-imgproxy-fallback"]) == (404, "1")
    again = server.get(server.url("thumbnail", "photos/also-missing", "webp"))
    assert (again.status_code, again.headers["x-imgproxy-tier"]) == (404, "memory")
    assert server.metric("imgproxy_renders_total") == 1
    refused = server_factory(env={"IMGPROXY_FALLBACK": "site/nothing"}, wait=False)
    assert refused.proc.wait(30) != 0
    assert "IMGPROXY_FALLBACK" in refused.logs()
