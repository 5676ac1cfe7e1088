"""JPEG XL originals through pillow-jxl (the libvips wheel has no libjxl)."""

import pytest
import pyvips
from conftest import TESTIMAGES, corpus

from imgproxy.errors import TooLarge, Undecodable
from imgproxy.presets import Preset
from imgproxy.render import Limits, RenderJob, Source, configure, render
from imgproxy.render.jxl import size

configure()
FILES = sorted(p.name for p in (TESTIMAGES / "jxl").glob("*.jxl"))


@pytest.mark.parametrize("name", FILES)
def test_every_jxl_renders(name: str) -> None:
    data = corpus(f"jxl/{name}").read_bytes()
    out = render(RenderJob(Source(data=data), Preset("t", 300, 300), "webp", Limits()))
    image = pyvips.Image.new_from_buffer(out.body, "")
    assert max(image.width, image.height) <= 300 and image.width > 0


@pytest.mark.parametrize(("name", "expected"), [
    ("bimg__test.jxl", (1200, 720)), ("libjxlconf__bicycles.jxl", (1024, 631)),
    ("libjxlconf__cmyk_layers.jxl", (512, 512)), ("libjxlconf__lz77_flower.jxl", (834, 244)),
])
def test_size_is_read_from_the_header(name: str, expected: tuple[int, int]) -> None:
    assert size(corpus(f"jxl/{name}").read_bytes()) == expected


def test_pixel_limit_before_decoding() -> None:
    data = corpus("jxl/bimg__test.jxl").read_bytes()
    with pytest.raises(TooLarge):
        render(RenderJob(Source(data=data), Preset("t", 300, 300), "webp", Limits(max_source_pixels=1000)))


def test_truncated_jxl_is_422() -> None:
    data = corpus("jxl/bimg__test.jxl").read_bytes()
    for cut in (3, 200):
        with pytest.raises(Undecodable):
            render(RenderJob(Source(data=data[:cut]), Preset("t", 300, 300), "webp", Limits()))
