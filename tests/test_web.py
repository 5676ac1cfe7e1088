"""The web layer in process: httpx's ASGITransport against the real app and a
thread renderer, for routing, errors, 304 and HEAD. Real servers (test_app.py)
stay for isolation, exactly-once and faults."""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import KEY, ROOT, add_original, corpus
from prometheus_client import REGISTRY

from imgproxy import sign_url
from imgproxy.cdn import surrogate_key
from imgproxy.config import Settings
from imgproxy.urls import meta_url, original_url
from imgproxy.web.app import App, create_app

TOKEN = "upload-token-0123456789abcdef0123456789"


def _settings(tmp_path: Path) -> Settings:
    originals = tmp_path / "originals"
    add_original(originals, corpus("exif/mei__Nikon_D1X.jpg"), "photos/42")
    return Settings(keys=(KEY,), originals=originals.as_uri(), variants=(tmp_path / "v").as_uri(),
                    presets=str(ROOT / "config" / "presets.toml"), render_mode="thread",
                    render_threads=1, dev_key_file=str(tmp_path / "dev-key"), log_format="json",
                    ingest_tokens=(TOKEN,))


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    app: App = create_app(_settings(tmp_path))
    async with app.lifespan(app.starlette):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://imgproxy.test") as client:
            yield client


def url(preset: str = "thumbnail", id: str = "photos/42", fmt: str = "webp") -> str:
    return sign_url(KEY, preset, id, fmt)


async def test_a_miss_renders_then_memory_serves(client: httpx.AsyncClient) -> None:
    first = await client.get(url())
    assert first.status_code == 200 and first.headers["x-imgproxy-tier"] == "render"
    assert first.headers["content-type"] == "image/webp"
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    second = await client.get(url())
    assert second.headers["x-imgproxy-tier"] == "memory" and second.content == first.content
    assert second.headers["etag"] == first.headers["etag"]


def test_the_surrogate_key_is_a_stable_token_per_original() -> None:
    # Pinned: a CDN's copies are purged by the key the servers sent when they were cached,
    # so a change here would leave every cached object unpurgeable.
    assert surrogate_key("photos/42") == "o-13ca536754a7fc20"
    assert surrogate_key("photos/43") != surrogate_key("photos/42")


async def test_responses_carry_the_surrogate_key_of_their_original(tmp_path: Path) -> None:
    settings = dataclasses.replace(_settings(tmp_path), fallback="photos/42")
    app: App = create_app(settings)
    async with app.lifespan(app.starlette), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://imgproxy.test") as client:
        key = surrogate_key("photos/42")
        for path in (url(), url(), url("web", fmt="auto"), meta_url(KEY, "photos/42")):
            assert (await client.get(path)).headers["surrogate-key"] == key, path  # render, memory, .auto, /meta/
        # A fallback stands in at the missing original's URL: purging that original drops it.
        missing = await client.get(url(id="photos/missing"))
        assert missing.status_code == 404 and missing.headers["surrogate-key"] == surrogate_key("photos/missing")
        assert "surrogate-key" not in (await client.get(url(), headers={"if-none-match": "*"})).headers  # 304

    off = create_app(dataclasses.replace(settings, surrogate_key_header="Cache-Tag"))
    async with off.lifespan(off.starlette), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=off), base_url="http://imgproxy.test") as client:
        r = await client.get(url())
        assert r.headers["cache-tag"] == key and "surrogate-key" not in r.headers
    off = create_app(dataclasses.replace(settings, surrogate_key_header=""))
    async with off.lifespan(off.starlette), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=off), base_url="http://imgproxy.test") as client:
        for path in (url(), meta_url(KEY, "photos/42"), url(id="photos/missing")):
            r = await client.get(path)
            assert not {"surrogate-key", "cache-tag"} & set(r.headers), path


async def test_conditional_get_and_head(client: httpx.AsyncClient) -> None:
    etag = (await client.get(url())).headers["etag"]
    for tags in (etag, f'W/{etag}', f'"other", {etag}', "*"):
        r = await client.get(url(), headers={"if-none-match": tags})
        assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
        assert "content-type" not in r.headers
    head = await client.head(url())
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 0


@pytest.mark.parametrize(("path", "status", "error"), [
    ("/v/thumbnail/photos/42.webp", 403, "forbidden"),  # no signature
    ("/v/thumbnail/photos/42.webp?s=AAAA", 403, "forbidden"),
    ("/v/thumbnail/photos/42.bmp?s=AAAA", 400, "bad_request"),  # shape before signature
    ("/v/thumbnail/photos/%2e%2e/42.webp?s=AAAA", 400, "bad_request"),
])
async def test_signature_errors(client: httpx.AsyncClient, path: str, status: int, error: str) -> None:
    r = await client.get(path)
    assert (r.status_code, r.json()["error"]) == (status, error)
    assert r.headers["cache-control"] == ("no-store" if status == 403 else "public, max-age=60")


async def test_request_errors(client: httpx.AsyncClient) -> None:
    r = await client.get(url() + "&x=1")  # a valid s: sent to the one URL of the variant
    assert r.status_code == 308 and r.headers["location"].endswith(url())
    r = await client.get(url().replace("?s=", "?s=forged") + "&x=1")
    assert r.status_code == 400 and r.json()["error"] == "bad_request"
    r = await client.get(url("nope"))
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = await client.get(url(id="photos/missing"))
    assert r.status_code == 404 and r.headers["cache-control"].startswith("public, max-age=")
    r = await client.post(url())
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD" and r.json()["error"] == "method_not_allowed"


async def test_health_and_metrics(client: httpx.AsyncClient) -> None:
    health = await client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert (await client.get("/metrics")).text.count("imgproxy_requests_total") > 0


def _errors(category: str) -> float:
    return REGISTRY.get_sample_value("imgproxy_errors_total", {"category": category}) or 0.0


async def _logged(tmp_path: Path, method: str, path: str, headers: dict[str, str],
                  patch: Callable[[App], None] = lambda app: None) -> tuple[httpx.Response, float, dict[str, Any]]:
    """One request to a fresh app: its response, the rise of imgproxy_errors_total for
    the response's error category, and its access line."""
    app: App = create_app(_settings(tmp_path))
    log_file = tmp_path / "access.log"
    fd = os.open(log_file, os.O_WRONLY | os.O_CREAT)
    app._asgi.lines.fd = fd  # the access lines, to a file instead of stderr
    try:
        async with app.lifespan(app.starlette):
            patch(app)
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://imgproxy.test") as client:
                request = client.build_request(method, path, headers={"x-request-id": "req-1", **headers},
                                               content=b"x" if method == "PUT" else None)
                before = {c: _errors(c) for c in CATEGORIES}
                r = await client.send(request)
                category = r.json()["error"]
                rise = _errors(category) - before[category]
        app._asgi.lines.flush()
    finally:
        os.close(fd)
    lines = [json.loads(line) for line in log_file.read_text().splitlines()]
    return r, rise, next(line for line in lines if line["request_id"] == "req-1")


CATEGORIES = ("forbidden", "not_found", "unauthorized", "bad_request", "internal", "range_not_satisfiable")


@pytest.mark.parametrize(("method", "path", "headers", "status", "category"), [
    ("GET", "/meta/photos/42.json?s=AAAA", {}, 403, "forbidden"),
    ("GET", "/meta/photos/42.json?s=AAAA&x=1", {}, 400, "bad_request"),
    ("GET", "original:photos/missing", {}, 404, "not_found"),
    ("GET", "original:photos/42", {"range": "bytes=999999999-"}, 416, "range_not_satisfiable"),
    ("PUT", "/o/photos/43", {"authorization": "Bearer wrong"}, 403, "forbidden"),
    ("PUT", "/o/photos/43", {}, 401, "unauthorized"),
    ("PUT", "/o/photos/43?x=1", {"authorization": f"Bearer {TOKEN}"}, 400, "bad_request"),
])
async def test_errors_are_counted_and_logged_on_every_endpoint(
        tmp_path: Path, method: str, path: str, headers: dict[str, str], status: int, category: str) -> None:
    if path.startswith("original:"):
        path = original_url(KEY, path.removeprefix("original:"), int(time.time()) + 600)
    r, rise, line = await _logged(tmp_path, method, path, headers)
    assert (r.status_code, r.json()["error"]) == (status, category)
    assert rise == 1  # imgproxy_errors_total{category}, once
    assert (line["method"], line["status"], line.get("error")) == (method, status, category)
    if status == 416:
        assert r.headers["content-range"].startswith("bytes */") and r.headers["cache-control"] == "no-store"


async def test_a_bug_on_any_endpoint_is_a_counted_500(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def broken(app: App) -> None:
        async def describe(*args: object) -> None:
            raise RuntimeError("a bug")
        assert app.meta is not None
        app.meta.variants.describe = describe  # type: ignore[method-assign]

    r, rise, line = await _logged(tmp_path, "GET", meta_url(KEY, "photos/42"), {}, broken)
    assert (r.status_code, r.json()["error"], rise, line["error"]) == (500, "internal", 1, "internal")
    assert "unhandled error (category: bug) for GET /meta/photos/42.json" in caplog.text


async def test_a_starting_server_counts_its_503s(tmp_path: Path) -> None:
    app: App = create_app(_settings(tmp_path))  # no lifespan: no endpoint built yet
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://imgproxy.test") as client:
        for path in (url(), meta_url(KEY, "photos/42")):
            before = _errors("unavailable")
            r = await client.get(path)
            assert (r.status_code, r.json()["error"], r.headers["retry-after"]) == (503, "unavailable", "1")
            assert _errors("unavailable") == before + 1


async def test_a_missing_original_is_one_404_lifetime_on_every_endpoint(client: httpx.AsyncClient) -> None:
    """IMGPROXY_NOT_FOUND_MAX_AGE (default 10) on /v/, /meta/ and /o/ alike, not each copy's own."""
    for path in (url(id="photos/missing"), meta_url(KEY, "photos/missing"),
                 original_url(KEY, "photos/missing", int(time.time()) + 600)):
        r = await client.get(path)
        assert (r.status_code, r.headers["cache-control"]) == (404, "public, max-age=10"), path
