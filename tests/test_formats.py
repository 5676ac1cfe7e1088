"""The format registry: one record per output, one per input loader."""

import pytest
import pyvips

from imgproxy.formats import ANIMATED_LOADERS, FORMATS, INPUTS, OUTPUTS, mime_of
from imgproxy.presets import DEFAULT_QUALITY, Preset
from imgproxy.render import Limits, RenderJob, Source, configure, render
from imgproxy.urls import parse_path

configure()


def test_mime_of_a_store_key():
    assert mime_of("p/d/a.b.avif") == "image/avif"
    assert mime_of("p/d/a") == "application/octet-stream"


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_output_is_reachable_and_encodes_what_it_says(fmt):
    """One entry is all a format needs: URL, default quality, encoder, MIME type."""
    out = OUTPUTS[fmt]
    assert parse_path(f"p/x.{fmt}").fmt == fmt
    assert Preset("p", 10, 10).quality[fmt] == DEFAULT_QUALITY[fmt] == out.quality
    rgba = pyvips.Image.black(40, 30).bandjoin([0, 0, 128]).copy(interpretation="srgb")
    body = render(RenderJob(Source(data=rgba.pngsave_buffer()), Preset("p", 20, 20), fmt, Limits())).body
    decoded = pyvips.Image.new_from_buffer(body, "")
    assert decoded.get("vips-loader").startswith(out.saver.split("save")[0].replace("jpeg", "jpeg"))
    assert decoded.hasalpha() == out.alpha


def test_every_input_loader_exists_in_this_libvips():
    for loader in INPUTS:
        assert pyvips.type_from_name(loader.name) != 0, loader.name
    assert {"gifload_buffer", "webpload"} <= ANIMATED_LOADERS
