"""End to end: a real uvicorn on 127.0.0.1 serving originals from the corpus."""

import asyncio

import httpx
import pytest
import pyvips
from conftest import add_original, corpus


@pytest.fixture
def photo(server):
    add_original(server, corpus("exif/mei__Nikon_D1X.jpg"), "photos/42")
    return server


def test_first_request_renders_then_memory_serves(photo):
    url = photo.url("thumbnail", "photos/42", "webp")
    first = photo.get(url)
    assert first.status_code == 200, first.text
    assert first.headers["x-imgproxy-tier"] == "render"
    assert first.headers["content-type"] == "image/webp"
    assert int(first.headers["content-length"]) == len(first.content)
    assert first.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert first.headers["etag"].startswith('"') and not first.headers["etag"].startswith('W/')
    assert first.headers["last-modified"].endswith("GMT")
    image = pyvips.Image.new_from_buffer(first.content, "")
    assert max(image.width, image.height) == 300
    second = photo.get(url)
    assert second.headers["x-imgproxy-tier"] == "memory"
    assert second.content == first.content and second.headers["etag"] == first.headers["etag"]


def test_store_tier_after_restart(server_factory, tmp_path):
    originals = tmp_path / "originals"
    add_original(originals, corpus("exif/mei__Nikon_D1X.jpg"), "photos/42")
    variants = tmp_path / "variants"
    one = server_factory(originals=originals, variants=variants)
    url_path = one.url("web", "photos/42", "jpg").removeprefix(one.base_url)
    body = one.get(url_path).content
    one.stop()
    two = server_factory(originals=originals, variants=variants)
    r = two.get(url_path)
    assert r.headers["x-imgproxy-tier"] == "store" and r.content == body
    assert two.metric("imgproxy_renders_total") == 0


def test_every_format(photo):
    magic = {"webp": b"RIFF", "avif": b"ftypavif", "jpg": b"\xff\xd8\xff", "png": b"\x89PNG"}
    for fmt, head in magic.items():
        r = photo.get(photo.url("preview", "photos/42", fmt))
        assert r.status_code == 200
        assert head in r.content[:12], fmt


def test_conditional_get_and_head(photo):
    url = photo.url("thumbnail", "photos/42", "jpg")
    etag = photo.get(url).headers["etag"]
    r = photo.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["etag"] == etag
    assert r.headers["cache-control"].endswith("immutable")
    assert photo.get(url, headers={"If-None-Match": f'"other", {etag}'}).status_code == 304
    assert photo.get(url, headers={"If-None-Match": '"other"'}).status_code == 200
    head = httpx.head(url)
    assert head.status_code == 200 and head.content == b""
    assert int(head.headers["content-length"]) > 0
    assert head.headers["etag"] == etag


def error(r: httpx.Response, status: int) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert set(body) >= {"error", "detail"}
    return body


def test_forged_and_missing_signatures_are_403(photo):
    url = photo.url("thumbnail", "photos/42", "webp")
    sig = url.rsplit("=", 1)[1]
    forged = url[: -len(sig)] + ("A" if sig[0] != "A" else "B") + sig[1:]
    r = photo.get(forged)
    error(r, 403)
    assert r.headers["cache-control"] == "no-store"
    error(photo.get(url.split("?")[0]), 403)
    # A valid signature for one variant does not open another.
    error(photo.get(url.replace("thumbnail", "web")), 403)
    error(photo.get(url.replace(".webp", ".png")), 403)


def test_extra_query_parameters_redirect_to_the_canonical_url(photo):
    url = photo.url("thumbnail", "photos/42", "webp")
    for extra in (url + "&w=100", url.replace("?s=", "?w=100&s=")):
        r = photo.get(extra)
        assert r.status_code == 308 and r.headers["location"] == url.removeprefix(photo.base_url)
    error(photo.get(url.split("?")[0] + "?w=100"), 400)  # no signature: no redirect (tests/test_canonical.py)


@pytest.mark.parametrize("path", [
    "/v/thumbnail/../../etc/passwd.webp",
    "/v/thumbnail/%2e%2e/%2e%2e/etc/passwd.webp",
    "/v/thumbnail/..%2f..%2fetc/passwd.webp",
    "/v/thumbnail//etc/passwd.webp",
    "/v/thumbnail/photos/%2F42.webp",
    "/v/thumbnail/photos\\..\\42.webp",
])
def test_traversal_ids_are_4xx(photo, path):
    from imgproxy.signing import sign

    # Signed with the real key, so the request gets past the signature check.
    canonical = path.removeprefix("/v/")
    raw = httpx.URL(photo.base_url).copy_with(raw_path=(path + "?s=" + sign(photo.key, canonical)).encode())
    r = httpx.get(raw)
    assert 400 <= r.status_code < 500, (path, r.status_code)
    assert b"root:" not in r.content


def test_unknown_preset_and_missing_original_are_404(photo):
    r = photo.get(photo.url("nope", "photos/42", "webp"))
    assert error(r, 404)["detail"].startswith("unknown preset")
    assert r.headers["cache-control"] == "public, max-age=10"  # IMGPROXY_NOT_FOUND_MAX_AGE
    error(photo.get(photo.url("thumbnail", "photos/43", "webp")), 404)


def test_unsupported_and_undecodable_originals(photo):
    (photo.originals / "notes").write_text("hello, not an image")
    error(photo.get(photo.url("thumbnail", "notes", "webp")), 415)
    add_original(photo, corpus("corrupt/sharp__corrupt-header.jpg"), "broken")
    error(photo.get(photo.url("thumbnail", "broken", "webp")), 422)
    add_original(photo, corpus("bomb/sharp__giant-image.jpg"), "bomb")
    body = error(photo.get(photo.url("thumbnail", "bomb", "webp")), 413)
    assert body["limit"] == "max_source_pixels"
    assert not any(p.is_file() for p in photo.variants.rglob("*") if ".locks" not in p.parts)


def test_methods(photo):
    r = httpx.post(photo.url("thumbnail", "photos/42", "webp"))
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


def test_healthz_and_metrics(photo):
    health = photo.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    photo.get(photo.url("thumbnail", "photos/42", "webp"))
    photo.get(photo.url("thumbnail", "photos/42", "webp"))
    photo.get(photo.url("thumbnail", "photos/43", "webp"))
    text = photo.get("/metrics").text
    assert 'imgproxy_renders_total{format="webp",preset="thumbnail"} 1.0' in text
    assert 'imgproxy_requests_total{outcome="render"} 1.0' in text
    assert 'imgproxy_requests_total{outcome="memory"} 1.0' in text
    assert 'imgproxy_requests_total{outcome="not_found"} 1.0' in text


def test_a_herd_on_a_cold_variant_renders_once(photo):
    url = photo.url("web", "photos/42", "avif")

    async def herd():
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=50)) as client:
            return await asyncio.gather(*(client.get(url) for _ in range(50)))

    responses = asyncio.run(herd())
    assert [r.status_code for r in responses] == [200] * 50
    assert len({r.content for r in responses}) == 1
    assert photo.metric("imgproxy_renders_total") == 1


def test_editing_a_preset_never_serves_old_renders(server_factory, tmp_path):
    originals = tmp_path / "originals"
    variants = tmp_path / "variants"
    add_original(originals, corpus("exif/mei__Nikon_D1X.jpg"), "p")
    presets = tmp_path / "presets.toml"
    presets.write_text("[card]\nwidth = 300\nheight = 300\n")
    one = server_factory(originals=originals, variants=variants, env={"IMGPROXY_PRESETS": str(presets)})
    url = one.url("card", "p", "png").removeprefix(one.base_url)
    assert pyvips.Image.new_from_buffer(one.get(url).content, "").width == 300
    one.stop()
    presets.write_text("[card]\nwidth = 120\nheight = 120\n")
    two = server_factory(originals=originals, variants=variants, env={"IMGPROXY_PRESETS": str(presets)})
    r = two.get(url)
    assert r.headers["x-imgproxy-tier"] == "render"
    assert pyvips.Image.new_from_buffer(r.content, "").width == 120


def test_original_with_extension_is_served_under_its_id(server):
    add_original(server, corpus("webp/sharp__4.webp"), "gallery/7/cat")
    r = server.get(server.url("thumbnail", "gallery/7/cat", "jpg"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/jpeg"


@pytest.mark.parametrize("name", [
    "color/sharp__Channel_digital_image_CMYK_color.jpg",
    "orientation/recurser__Portrait_6.jpg",
    "heic/exifsamples__IMG_5195.HEIC",
    "exif/exifsamples__canon_hdr_YES.jpg",
])
def test_corpus_samples_end_to_end(server, name):
    add_original(server, corpus(name), "sample")
    r = server.get(server.url("thumbnail", "sample", "webp"))
    assert r.status_code == 200, r.text
    out = pyvips.Image.new_from_buffer(r.content, "")
    assert max(out.width, out.height) == 300
    assert "exif-data" not in out.get_fields()


def test_malformed_metadata_never_gets_a_500(server):
    import malformed

    (server.originals / "meta").mkdir()
    (server.originals / "meta/png-key.png").write_bytes(malformed.png(text_key=b"k\xe9y", text=b"\xff"))
    exif = malformed.tiff_exif([(0x010F, 2, b"Can\xffon\x00"), (0x0110, 2, b"\xc3(\x00")])
    (server.originals / "meta/jpeg-exif.jpg").write_bytes(malformed.jpeg(exif, b"<x \xff", b"\x00" * 9, b"\xfe"))
    (server.originals / "meta/webp-xmp.webp").write_bytes(malformed.webp(b"\xff" * 30, b"<bad", b"junk"))
    for id in ("meta/png-key", "meta/jpeg-exif", "meta/webp-xmp"):
        for fmt in ("webp", "jpg"):
            r = server.get(server.url("thumbnail", id, fmt))
            assert r.status_code == 200, (id, fmt, r.text)


@pytest.mark.parametrize("path", ["/metrics/", "/healthz/", "/readyz/"])
def test_a_trailing_slash_is_404_not_a_redirect_to_the_host_header(server, path):
    r = httpx.get(server.base_url + path, headers={"host": "evil.example"}, follow_redirects=False)
    assert r.status_code == 404 and "location" not in r.headers
    assert r.headers["content-type"] == "application/json" and r.json()["error"] == "not_found"
