"""The render jobs: one variant, many variants from one decode, and the header probe."""

from pathlib import Path

import pytest
import pyvips
from conftest import corpus

from imgproxy.errors import TooLarge, Undecodable
from imgproxy.presets import load_presets
from imgproxy.render import FanoutJob, Limits, ProbeJob, RenderJob, Source, configure, run_job
from imgproxy.render.pipeline import render_many

PRESETS = load_presets(Path(__file__).resolve().parent.parent / "config" / "presets.toml")
configure()


def decode(body: bytes, **kw) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(body, "", **kw)


def test_fanout_matches_single_renders(landscape):
    """Every target of a fan-out has the size (within a pixel) and look of its own render."""
    targets = tuple((PRESETS[name], fmt) for name in ("thumbnail", "web", "thumb-square", "large")
                    for fmt in ("webp", "jpg"))
    fanned = render_many(FanoutJob(Source(path=str(landscape)), targets, Limits()))
    assert len(fanned.results) == len(targets)
    for (preset, fmt), result in zip(targets, fanned.results):
        single = run_job(RenderJob(Source(path=str(landscape)), preset, fmt, Limits()))
        assert abs(result.width - single.width) <= 1 and abs(result.height - single.height) <= 1, preset.name
        a, b = decode(result.body), decode(single.body)
        if (a.width, a.height) == (b.width, b.height):
            assert (a - b).abs().avg() < 4, preset.name  # same pixels, give or take resampling


def test_fanout_keeps_orientation_and_colour():
    targets = ((PRESETS["thumbnail"], "jpg"), (PRESETS["web"], "webp"))
    source = Source(path=str(corpus("orientation/recurser__Portrait_6.jpg")))
    single = run_job(RenderJob(source, PRESETS["thumbnail"], "jpg", Limits()))
    fanned = render_many(FanoutJob(source, targets, Limits()))
    assert (fanned.results[0].width, fanned.results[0].height) == (single.width, single.height)
    assert fanned.results[0].height > fanned.results[0].width  # portrait, upright


def test_one_target_failing_leaves_the_others(landscape):
    small = Limits(max_output_pixels=100_000)
    targets = ((PRESETS["thumbnail"], "webp"), (PRESETS["web"], "webp"))
    fanned = render_many(FanoutJob(Source(path=str(landscape)), targets, small))
    assert fanned.results[0].width == 300
    assert isinstance(fanned.results[1], TooLarge)


def test_a_bad_original_fails_the_whole_job():
    with pytest.raises(Undecodable):
        run_job(FanoutJob(Source(data=b"\xff\xd8\xff\xe0garbage"), ((PRESETS["web"], "webp"),), Limits()))


def test_animation_is_kept_where_the_format_can_hold_it():
    source = Source(path=str(corpus("animated/sharp__rotating-squares.gif")))
    fanned = render_many(FanoutJob(source, ((PRESETS["thumbnail"], "webp"), (PRESETS["thumbnail"], "jpg")),
                                   Limits()))
    animated, still = fanned.results
    assert decode(animated.body, n=-1).get("n-pages") > 1
    assert decode(still.body).get_typeof("n-pages") == 0 or decode(still.body).get("n-pages") == 1


def test_probe_reads_the_header_only():
    probed = run_job(ProbeJob(Source(path=str(corpus("large/mei__Issue_266.jpg"))), Limits()))
    assert probed.info["width"] == 5760 and probed.info["height"] == 3840
    assert probed.info["loader"].startswith("jpegload")
