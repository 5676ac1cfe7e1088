"""The format is decided by the bytes, never the name; the allowed inputs are a setting."""

from pathlib import Path

import pytest
import pyvips
from conftest import Server, add_original, corpus

from imgproxy.render.sniff import HEAD, sniff

CASES = {
    "color/sharp__tbgn2c16.png": "png",
    "exif/mei__Apple_iPhone_4.jpg": "jpeg",
    "webp/sharp__4.webp": "webp",
    "animated/libvips__cogs.gif": "gif",
    "heic/libheif__example.heic": "heic",
    "heic/linku__kimono.crop.avif": "avif",
    "tiff/libvips__1bit.tif": "tiff",
    "svg/libvips__logo.svg": "svg",
    "svg/libvips__logo.svgz": "svg",
    "jxl/bimg__test.jxl": "jxl",
    "jxl/libjxlconf__cmyk_layers.jxl": "jxl",
    "raw/rawpy__RAW_KODAK_DC50.KDC": "raw",
    "raw/exiftool__DNG.dng": "raw",
    "raw/exiftool__Nikon.nef": "raw",
    "raw/exiftool__CanonRaw.cr3": "raw",
    "raw/exiftool__FujiFilm.raf": "raw",
    "raw/exiftool__Panasonic.rw2": "raw",
    "misc/libvips__small.bmp": None,
    "misc/sharp__relax.jp2": None,
}


@pytest.mark.parametrize(("name", "expected"), CASES.items())
def test_sniff_by_bytes(name: str, expected: str | None) -> None:
    assert sniff(corpus(name).read_bytes()[:HEAD]) == expected


def test_text_is_nothing() -> None:
    assert sniff(b"hello, world\n") is None
    assert sniff(b"") is None


def test_names_lie_and_bytes_win(server: Server, tmp_path: Path) -> None:
    # A PNG stored as .jpg renders (as the PNG it is).
    add_original(server, corpus("color/sharp__tbgn2c16.png"), "png-as-jpg", keep_suffix=False)
    (server.originals / "png-as-jpg").rename(server.originals / "png-as-jpg.jpg")
    r = server.get(server.url("thumbnail", "png-as-jpg", "png"))
    assert r.status_code == 200, r.text
    assert pyvips.Image.new_from_buffer(r.content, "").width == 32
    # An SVG inside .webp is an SVG, with the SVG rules (rendered from memory, inert).
    (server.originals / "svg-as-webp.webp").write_bytes(corpus("svg/libvips__logo.svg").read_bytes())
    r = server.get(server.url("thumbnail", "svg-as-webp", "png"))
    assert r.status_code == 200, r.text
    # ... and the SVG element cap applies to it too.
    (server.originals / "bomb-as-webp.webp").write_bytes(b"<svg>" + b"<g/>" * 200_000 + b"</svg>")
    r = server.get(server.url("thumbnail", "bomb-as-webp", "png"))
    assert r.status_code == 413 and r.json()["limit"] == "max_svg_elements"
    # Text named .png: a clear 415 with a short JSON body, nothing stored.
    (server.originals / "text.png").write_text("just some text, not an image\n")
    r = server.get(server.url("thumbnail", "text", "webp"))
    assert r.status_code == 415
    assert r.json()["error"] == "unsupported_format"
    assert not list(server.variants.rglob("text.*"))


def test_allowed_inputs_are_a_setting(server_factory) -> None:  # type: ignore[no-untyped-def]
    server = server_factory(env={"IMGPROXY_INPUT_FORMATS": "jpeg,webp"})
    add_original(server, corpus("color/sharp__tbgn2c16.png"), "png")
    add_original(server, corpus("exif/mei__Apple_iPhone_4.jpg"), "jpeg")
    add_original(server, corpus("svg/libvips__logo.svg"), "logo")
    assert server.get(server.url("thumbnail", "jpeg", "webp")).status_code == 200
    for id in ("png", "logo"):
        r = server.get(server.url("thumbnail", id, "webp"))
        assert r.status_code == 415, r.text
        assert "not accepted" in r.json()["detail"]


def test_an_unknown_allowed_format_stops_start_up() -> None:
    from imgproxy.config import ConfigError, Settings

    with pytest.raises(ConfigError, match="IMGPROXY_INPUT_FORMATS"):
        Settings(input_formats=("jpeg", "bmp"))


def test_error_bodies_name_no_server_paths(server: Server) -> None:
    """libvips names the file it read (a temporary copy, or the originals folder):
    the client gets a category and a short generic detail; the log gets the rest."""
    names = ["corrupt/libvips-fuzz__jpegsave_buffer_fuzzer-5759265708441600",
             "corrupt/exifsamples__image02206.jpg", "raw/exiftool__Nikon.nef", "jxl/bimg__test.jxl"]
    for i, name in enumerate(names):
        data = corpus(name).read_bytes()
        (server.originals / f"bad{i}.jpg").write_bytes(data[: len(data) // 3])
        r = server.get(server.url("thumbnail", f"bad{i}", "webp"))
        assert 400 <= r.status_code < 500, (name, r.status_code, r.text)
        body = r.json()
        assert set(body) <= {"error", "detail", "limit", "format"}, body
        assert "/" not in body["detail"] and str(server.originals) not in r.text
