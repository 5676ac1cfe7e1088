"""Public presets (docs/URLS.md#public-presets): unsigned URLs reach only a
public preset's own size and ladder widths, with no focal point and no query."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from conftest import KEY, ROOT, Server, add_original, corpus

from imgproxy import sign_url
from imgproxy.config import Settings
from imgproxy.presets import Preset, parse_presets
from imgproxy.web.app import App, create_app

PRESETS = """
[card]
width = 800
height = 600
fit = "cover"
widths = [320, 640]
public = true

[private]
width = 800
height = 600
fit = "cover"
widths = [320, 640]
"""


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    originals = tmp_path / "originals"
    add_original(originals, corpus("exif/mei__Nikon_D1X.jpg"), "photos/42")
    presets = tmp_path / "presets.toml"
    presets.write_text(PRESETS)
    settings = Settings(keys=(KEY,), originals=originals.as_uri(), variants=(tmp_path / "v").as_uri(),
                        presets=str(presets), render_mode="thread", render_threads=1,
                        dev_key_file=str(tmp_path / "dev-key"), log_format="json")
    app: App = create_app(settings)
    async with app.lifespan(app.starlette), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://imgproxy.test") as client:
        yield client


def test_public_changes_no_digest() -> None:
    public, private = parse_presets({"a": {"width": 8, "height": 6, "public": True},
                                     "b": {"width": 8, "height": 6}}).values()
    assert public.public and not private.public
    assert dataclasses.replace(public, name="b").digest == private.digest
    with pytest.raises(ValueError, match="public must be true or false"):
        Preset(name="c", width=8, height=6, public="yes")  # type: ignore[arg-type]


async def test_an_unsigned_public_url_is_the_signed_variant(client: httpx.AsyncClient) -> None:
    signed_url = sign_url(KEY, "card", "photos/42", "webp", width=640)
    unsigned_url = signed_url.partition("?")[0]
    assert unsigned_url == "/v/card@w640/photos/42.webp"
    unsigned = await client.get(unsigned_url)
    assert unsigned.status_code == 200 and unsigned.headers["x-imgproxy-tier"] == "render"
    signed = await client.get(signed_url)  # a public preset's signed URL still works: the same render
    assert signed.status_code == 200 and signed.headers["x-imgproxy-tier"] == "memory"
    assert signed.headers["etag"] == unsigned.headers["etag"] and signed.content == unsigned.content
    again = await client.get(unsigned_url)  # the verified-URL cache holds unsigned URLs too
    assert again.status_code == 200 and again.headers["etag"] == unsigned.headers["etag"]
    assert (await client.get("/v/card/photos/42.auto")).status_code == 200  # the preset's own size, .auto


@pytest.mark.parametrize(("path", "status"), [
    ("/v/private/photos/42.webp", 403),  # a private preset
    ("/v/private@w640/photos/42.webp", 403),
    ("/v/nope/photos/42.webp", 403),  # an unknown one: no different from a private one
    ("/v/card@w500/photos/42.webp", 400),  # a width off the ladder
    ("/v/card@f0.8x0.3/photos/42.webp", 400),  # a focal point
    ("/v/card@w320@f0.8x0.3/photos/42.webp", 400),
    ("/v/card/photos/42.webp?utm_source=x", 400),  # any query
    ("/v/card/photos/42.webp?s=", 403),  # an empty signature is a signed URL, and a bad one
    ("/v/card/photos/42.webp?s=bad", 403),
])
async def test_unsigned_urls_reach_nothing_else(client: httpx.AsyncClient, path: str, status: int) -> None:
    response = await client.get(path)
    assert response.status_code == status, response.text


async def test_a_signed_url_keeps_its_focal_point_and_redirect(client: httpx.AsyncClient) -> None:
    focused = sign_url(KEY, "card", "photos/42", "webp", width=320, focus=(0.8, 0.3))
    assert (await client.get(focused)).status_code == 200
    utm = await client.get(focused + "&utm_source=x")
    assert utm.status_code == 308 and utm.headers["location"] == focused


def test_a_real_server_serves_public_presets_unsigned(server_factory: Callable[..., Server], tmp_path: Path) -> None:
    presets = tmp_path / "presets.toml"
    presets.write_text(PRESETS)
    server = server_factory(env={"IMGPROXY_PRESETS": str(presets)})
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "photos/42")
    unsigned = server.get("/v/card@w320/photos/42.jpg")
    assert unsigned.status_code == 200 and unsigned.headers["content-type"] == "image/jpeg"
    signed = server.get(sign_url(KEY, "card", "photos/42", "jpg", width=320))
    assert signed.status_code == 200 and signed.headers["etag"] == unsigned.headers["etag"]
    assert signed.headers["x-imgproxy-tier"] != "render"  # the unsigned request's render, reused
    for path, status in (("/v/private@w320/photos/42.jpg", 403), ("/v/card@w321/photos/42.jpg", 400),
                         ("/v/card@f0.5x0.5/photos/42.jpg", 400), ("/v/card/photos/42.jpg?x=1", 400)):
        assert server.get(path).status_code == status, path


def test_sign_unsigned_prints_a_public_presets_urls(tmp_path: Path) -> None:
    presets = tmp_path / "presets.toml"
    presets.write_text(PRESETS)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "IMGPROXY_CONFIG": str(ROOT / "config/imgproxy.toml"),
           "IMGPROXY_PRESETS": str(presets), "IMGPROXY_KEYS": KEY}

    def sign(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "imgproxy", "sign", *args], env=env, capture_output=True,
                              text=True, timeout=30)

    assert sign("card", "photos/42", "--unsigned", "--width", "320").stdout.strip() == "/v/card@w320/photos/42.webp"
    assert sign("card", "photos/42", "--unsigned", "--srcset").stdout.strip() == (
        "/v/card@w320/photos/42.webp 320w, /v/card@w640/photos/42.webp 640w")
    assert sign("private", "photos/42", "--unsigned").returncode == 2
    assert sign("card", "photos/42", "--unsigned", "--focus", "0.5,0.5").returncode == 2
