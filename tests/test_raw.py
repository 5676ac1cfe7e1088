"""Camera RAW through rawpy (LibRaw): preview or demosaic, orientation, limits, bad files."""

from pathlib import Path

import pytest
import pyvips
from conftest import Server, add_original, corpus
from synthetic_dng import make_dng

from imgproxy.errors import ImgproxyError, TooLarge, Undecodable
from imgproxy.presets import Preset
from imgproxy.render import Limits, RenderJob, Source, configure, render

configure()
THUMB = Preset("t", 300, 300)
WEB = Preset("w", 1200, 1200)


def run(path: Path, preset: Preset = THUMB, fmt: str = "png", limits: Limits | None = None) -> pyvips.Image:
    body = render(RenderJob(Source(path=str(path)), preset, fmt, limits or Limits())).body
    return pyvips.Image.new_from_buffer(body, "")


def test_a_real_raw_demosaics() -> None:
    out = run(corpus("raw/rawpy__RAW_KODAK_DC50.KDC"), WEB)
    assert (out.width, out.height) == (768, 512)
    assert out.interpretation == "srgb" and out.bands == 3
    assert 20 < out.avg() < 235  # a picture, not black or white


def test_a_preview_large_enough_is_used() -> None:
    # The NEF is a JPEG by its bytes (its raw data is truncated): 640 px preview.
    out = run(corpus("raw/mei__Issue_247-1.nef"), THUMB)
    assert max(out.width, out.height) == 300


@pytest.mark.parametrize("name", [
    "raw/exiftool__CanonRaw.cr3",  # truncated, no preview
    "raw/exiftool__Nikon.nef",  # corrupt, no preview
    "raw/exiftool__DNG.dng",  # image data stripped, no preview
    "raw/exiftool__FujiFilm.raf",  # truncated, 160 px preview: too small for 300 px
    "raw/exiftool__Panasonic.rw2",  # stripped, 8 px preview
])
def test_truncated_or_preview_too_small_is_422(name: str) -> None:
    with pytest.raises(Undecodable):
        run(corpus(name))


@pytest.mark.parametrize(("orientation", "corner"), [(1, "tl"), (6, "tr"), (8, "bl"), (3, "br")])
def test_synthetic_dng_orientation(tmp_path: Path, orientation: int, corner: str) -> None:
    path = tmp_path / f"o{orientation}.dng"
    make_dng(path, orientation)
    out = run(path, Preset("p", 128, 128))
    assert (out.width > out.height) == (orientation in (1, 3))
    w, h = out.width, out.height
    points = {"tl": (w // 8, h // 8), "tr": (w * 7 // 8, h // 8),
              "bl": (w // 8, h * 7 // 8), "br": (w * 7 // 8, h * 7 // 8)}
    for name, (x, y) in points.items():
        r, g = out(x, y)[:2]
        assert (r > 200 and g < 60) == (name == corner), (name, out(x, y))


def test_pixel_limit_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.dng"
    make_dng(path)
    with pytest.raises(TooLarge) as info:
        run(path, limits=Limits(max_source_pixels=256 * 192 - 1))
    assert info.value.extra["limit"] == "max_source_pixels"


def test_byte_limit_before_decoding(tmp_path: Path) -> None:
    with pytest.raises(TooLarge) as info:
        run(corpus("raw/rawpy__RAW_KODAK_DC50.KDC"), limits=Limits(max_source_bytes=1000))
    assert info.value.extra["limit"] == "max_source_bytes"


def test_raw_over_http_renders_in_workers_and_bad_ones_are_4xx(server: Server) -> None:
    add_original(server, corpus("raw/rawpy__RAW_KODAK_DC50.KDC"), "kodak")
    add_original(server, corpus("raw/exiftool__CanonRaw.cr3"), "canon")
    r = server.get(server.url("thumbnail", "kodak", "webp"))
    assert r.status_code == 200, r.text
    r = server.get(server.url("thumbnail", "canon", "webp"))
    assert r.status_code == 422 and r.json()["error"] == "undecodable"
    assert not list(server.variants.rglob("canon.*"))


def test_errors_are_imgproxy_errors() -> None:
    with pytest.raises(ImgproxyError):
        render(RenderJob(Source(data=b"FUJIFILMCCD-RAW garbage"), THUMB, "png", Limits()))
