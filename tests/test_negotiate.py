"""``.auto``: the format picked by Accept, keyed on the chosen format, in a real browser too."""

import asyncio
import subprocess
from pathlib import Path

import httpx
import pytest
from conftest import Server, add_original, corpus, require

from imgproxy.web.negotiate import accepted

CHROME_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
SAFARI_OLD = "image/webp,image/png,image/svg+xml,image/*;q=0.8,video/*;q=0.8,*/*;q=0.5"
PHOTO = "exif/mei__Apple_iPhone_4.jpg"
ALPHA = "color/thumbor__PNG_transparency_demonstration_1.png"


@pytest.mark.parametrize(("accept", "types"), [
    (CHROME_ACCEPT, {"image/avif", "image/webp"}),
    (SAFARI_OLD, {"image/webp"}),
    ("*/*", set()),
    ("image/*", set()),
    ("image/avif;q=0, image/webp;q=0.5", {"image/webp"}),
    ("IMAGE/AVIF", {"image/avif"}),
    ("image/avif;q=bogus", set()),
])
def test_accept_parsing(accept: str, types: set[str]) -> None:
    assert accepted(accept.encode()) == types


def test_auto_picks_by_accept_and_varies(server: Server) -> None:
    add_original(server, corpus(PHOTO), "photo")
    add_original(server, corpus(ALPHA), "alpha")
    url = server.url("thumbnail", "photo", "auto")
    picks = {accept: server.get(url, headers={"accept": accept}) for accept in
             (CHROME_ACCEPT, SAFARI_OLD, "*/*")}
    assert [r.headers["content-type"] for r in picks.values()] == ["image/avif", "image/webp", "image/jpeg"]
    assert all(r.headers["vary"] == "Accept" for r in picks.values())
    assert len({r.headers["etag"] for r in picks.values()}) == 3
    alpha = server.get(server.url("thumbnail", "alpha", "auto"), headers={"accept": "*/*"})
    assert alpha.headers["content-type"] == "image/png"
    # Explicit formats carry no Vary; .auto reuses what .webp rendered (same bytes, same ETag).
    explicit = server.get(server.url("thumbnail", "photo", "webp"))
    assert "vary" not in explicit.headers
    assert explicit.headers["etag"] == picks[SAFARI_OLD].headers["etag"]
    assert explicit.headers["x-imgproxy-tier"] == "memory"
    # A 304 for .auto repeats Vary.
    again = server.get(url, headers={"accept": CHROME_ACCEPT, "if-none-match": picks[CHROME_ACCEPT].headers["etag"]})
    assert again.status_code == 304 and again.headers["vary"] == "Accept"


def test_auto_never_renders_what_webp_rendered(server: Server) -> None:
    add_original(server, corpus(PHOTO), "photo")
    assert server.get(server.url("web", "photo", "webp")).status_code == 200
    before = server.metric("imgproxy_renders_total")
    r = server.get(server.url("web", "photo", "auto"), headers={"accept": "image/webp"})
    assert r.headers["content-type"] == "image/webp"
    assert server.metric("imgproxy_renders_total") == before


def test_a_herd_with_mixed_accept_renders_each_format_once(server: Server) -> None:
    add_original(server, corpus(PHOTO), "photo")
    url = server.url("web", "photo", "auto")
    accepts = [CHROME_ACCEPT, SAFARI_OLD, "*/*"] * 12

    async def herd() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(client.get(url, headers={"accept": a}) for a in accepts))

    responses = asyncio.run(herd())
    assert {r.status_code for r in responses} == {200}
    assert server.metric("imgproxy_renders_total") == 3
    by_type: dict[str, set[str]] = {}
    for r in responses:
        by_type.setdefault(r.headers["content-type"], set()).add(r.headers["etag"])
    assert {k: len(v) for k, v in by_type.items()} == {"image/avif": 1, "image/webp": 1, "image/jpeg": 1}


def test_auto_can_be_switched_off(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(env={"IMGPROXY_AUTO_FORMAT": "false"})
    add_original(server, corpus(PHOTO), "photo")
    r = server.get(server.url("thumbnail", "photo", "auto"))
    assert r.status_code == 400 and "auto" in r.json()["detail"]


def test_sign_format_auto() -> None:
    from imgproxy import sign_url

    assert sign_url("k" * 32, "thumbnail", "a/b", "auto").split("?")[0] == "/v/thumbnail/a/b.auto"


@pytest.mark.slow
def test_chromium_receives_avif_and_decodes_it(server: Server, tmp_path: Path) -> None:
    require("chromium")
    add_original(server, corpus(PHOTO), "photo")
    url = server.url("thumbnail", "photo", "auto")
    page = tmp_path / "page.html"
    page.write_text(f"""<!doctype html><img id=i src="{url}"
        onload="document.title='ok ' + this.naturalWidth"
        onerror="document.title='error'">""")
    out = subprocess.run(
        ["chromium", "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert "<title>ok " in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    width = int(out.stdout.split("<title>ok ")[1].split("<")[0])
    assert width > 0
    # What the browser was given: the server's one render of this variant is AVIF.
    variants = [p.name for p in server.variants.rglob("photo.*")]
    assert variants == ["photo.avif"], variants


def test_auto_keeps_the_width_and_focal_point(server: Server, landscape: Path) -> None:
    """``.auto`` is the same request as the format it picks: modifiers and all."""
    import pyvips

    from imgproxy import sign_url

    add_original(server, landscape, "t/one")
    for preset, width, focus in (("web", 640, None), ("thumb-square", None, (0.9, 0.1))):
        plain = server.get(server.url(preset, "t/one", "webp"))
        explicit = server.get(sign_url(server.key, preset, "t/one", "webp", server.base_url, width=width, focus=focus))
        auto = server.get(sign_url(server.key, preset, "t/one", "auto", server.base_url, width=width, focus=focus),
                          headers={"accept": "image/webp"})
        assert auto.status_code == 200 and auto.headers["content-type"] == "image/webp"
        assert auto.headers["etag"] == explicit.headers["etag"] != plain.headers["etag"]
        assert auto.content == explicit.content
        if width is not None:
            assert pyvips.Image.new_from_buffer(auto.content, "").width == width
