"""Encoder settings read back from real outputs: chroma subsampling of JPEG and AVIF, AVIF effort."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from conftest import TESTIMAGES

from imgproxy.presets import load_presets, parse_presets
from imgproxy.render import Limits, RenderJob, Source, configure, render

PRESETS = load_presets(Path(__file__).resolve().parent.parent / "config" / "presets.toml")
PHOTO = TESTIMAGES / "exif" / "mei__Olympus_PEN_E-P3.jpg"
configure()


def jpeg_sampling(body: bytes) -> list[tuple[int, int]]:
    """(horizontal, vertical) sampling factors per component, from the SOF marker."""
    i = 2
    while i < len(body):
        assert body[i] == 0xFF, "not at a marker"
        marker, length = body[i + 1], struct.unpack(">H", body[i + 2:i + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):  # baseline, extended, progressive
            count = body[i + 9]
            factors = body[i + 10:i + 10 + 3 * count]
            return [(factors[3 * c + 1] >> 4, factors[3 * c + 1] & 15) for c in range(count)]
        i += 2 + length
    raise AssertionError("no SOF marker")


def avif_subsampling(body: bytes) -> tuple[int, int]:
    """(chroma_subsampling_x, chroma_subsampling_y) from the AV1 configuration box (av1C)."""
    at = body.index(b"av1C") + 4
    flags = body[at + 2]  # tier, high_bitdepth, twelve_bit, monochrome, subsampling x, y, position
    return (flags >> 3) & 1, (flags >> 2) & 1


def run(preset, fmt: str, avif_effort: int | None = None) -> bytes:
    return render(RenderJob(Source(path=str(PHOTO)), preset, fmt, Limits(), avif_effort)).body


def test_jpeg_is_420_at_q90_by_default():
    assert PRESETS["web"].quality["jpg"] == 90  # where libvips' own "auto" would switch to 4:4:4
    assert jpeg_sampling(run(PRESETS["web"], "jpg")) == [(2, 2), (1, 1), (1, 1)]
    assert jpeg_sampling(run(PRESETS["small"], "jpg")) == [(2, 2), (1, 1), (1, 1)]


def test_jpeg_chroma_444_on_request():
    preset = parse_presets({"text": {"width": 1200, "height": 1200, "quality": 90, "chroma": "444"}})["text"]
    assert jpeg_sampling(run(preset, "jpg")) == [(1, 1), (1, 1), (1, 1)]


def test_avif_chroma():
    assert avif_subsampling(run(PRESETS["thumbnail"], "avif")) == (1, 1)
    preset = parse_presets({"text": {"width": 300, "height": 300, "chroma": "444"}})["text"]
    assert avif_subsampling(run(preset, "avif")) == (0, 0)


def test_444_costs_bytes():
    preset = parse_presets({"text": {"width": 1200, "height": 1200, "quality": 90, "chroma": "444"}})["text"]
    assert len(run(preset, "jpg")) > 1.1 * len(run(PRESETS["web"], "jpg"))


def test_avif_effort_reaches_the_encoder():
    low, high = run(PRESETS["thumbnail"], "avif", 0), run(PRESETS["thumbnail"], "avif", 4)
    assert low != high
    assert avif_subsampling(low) == avif_subsampling(high) == (1, 1)


@pytest.mark.parametrize("body", [{"chroma": "422"}, {"chroma": 444}])
def test_bad_chroma(body):
    with pytest.raises(ValueError, match="chroma"):
        parse_presets({"x": {"width": 10, "height": 10, **body}})


def test_the_on_demand_effort_default_is_the_registrys():
    from imgproxy.config import Settings
    from imgproxy.formats import OUTPUTS

    assert Settings.avif_effort == OUTPUTS["avif"].options["effort"]
