"""Fit and gravity (imgproxy/render/crop.py): pixel tests on an off-centre subject."""

from __future__ import annotations

import math

import httpx
import pytest
import pyvips
from artwork import SUBJECT_RADIUS, decode, red_share, subject, write_presets
from conftest import corpus

from imgproxy import sign_url
from imgproxy.presets import Preset
from imgproxy.render import FanoutJob, Limits, RenderJob, Source, configure, run_job

#: The disc scaled into a 300 px square cut from the 600x300 cover scale.
WHOLE = math.pi * (SUBJECT_RADIUS / 2) ** 2 / 300**2


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    configure()
    return Source(path=str(subject(tmp_path_factory.mktemp("crop") / "subject.jpg")))


def render(source, preset, fmt="png", focus=None):
    return decode(run_job(RenderJob(source, preset, fmt, Limits(), focus=focus)).body)


def test_centre_crop_loses_the_subject_attention_keeps_it(source):
    assert red_share(render(source, Preset("t", 300, 300, fit="cover"))) == 0
    for gravity in ("attention", "entropy", "east"):
        image = render(source, Preset("t", 300, 300, fit="cover", gravity=gravity))
        assert (image.width, image.height) == (300, 300)
        assert red_share(image) > 0.95 * WHOLE, gravity


def test_a_focal_point_keeps_the_subject_as_central_as_the_edges_allow(source):
    square = render(source, Preset("t", 300, 300, fit="cover"), focus=(0.85, 0.5))
    assert red_share(square) > 0.95 * WHOLE
    # A narrow box leaves room to centre the point exactly: the disc's middle is the crop's.
    narrow = render(source, Preset("t", 100, 300, fit="cover"), focus=(0.85, 0.5))
    assert (narrow.width, narrow.height) == (100, 300)
    assert red_share(narrow.crop(40, 140, 20, 20)) == 1.0
    # The point wins over the preset's gravity.
    west = render(source, Preset("t", 300, 300, fit="cover", gravity="west"), focus=(0.85, 0.5))
    assert red_share(west) > 0.95 * WHOLE


def test_contain_letterboxes_and_fill_stretches(source):
    boxed = render(source, Preset("t", 300, 300, fit="contain", background="#00ff00"))
    assert (boxed.width, boxed.height) == (300, 300)
    assert boxed(150, 10)[:3] == [0, 255, 0] and boxed(150, 290)[:3] == [0, 255, 0]  # 300x150 centred
    assert red_share(boxed) > 0
    filled = render(source, Preset("t", 300, 300, fit="fill"))
    assert (filled.width, filled.height) == (300, 300)
    assert red_share(filled.crop(240, 140, 20, 20)) == 1.0  # the disc, stretched tall, at x = 0.85


def test_fan_out_honours_gravity_and_the_focal_point(source):
    targets = ((Preset("a", 300, 300, fit="cover", gravity="attention"), "png"),
               (Preset("b", 300, 300, fit="cover"), "png"),
               (Preset("c", 300, 300, fit="contain"), "png"))
    plain = run_job(FanoutJob(source, targets, Limits()))
    assert red_share(decode(plain.results[0].body)) > 0.95 * WHOLE
    assert red_share(decode(plain.results[1].body)) == 0
    focused = run_job(FanoutJob(source, targets, Limits(), focus=(0.85, 0.5)))
    assert red_share(decode(focused.results[1].body)) > 0.95 * WHOLE
    assert [(r.width, r.height) for r in focused.results] == [(300, 300)] * 3


def test_animations_are_cropped_and_letterboxed_frame_by_frame(source):
    anim = Source(path=str(corpus("animated/sharp__rotating-squares.webp")))
    for preset, size in ((Preset("t", 60, 30, fit="cover"), (60, 30)),
                         (Preset("t", 300, 100, fit="contain"), (300, 100))):
        focus = (0.1, 0.1) if preset.fit == "cover" else None
        body = run_job(RenderJob(anim, preset, "webp", Limits(), focus=focus)).body
        image = pyvips.Image.new_from_buffer(body, "", n=-1)
        assert (image.width, image.get("page-height")) == size
        assert image.get("n-pages") > 1 and image.height == size[1] * image.get("n-pages")


def test_exif_orientation_is_applied_before_the_focal_point(tmp_path):
    configure()
    # Stored sideways (orientation 6: rotate 90° clockwise to view): upright,
    # the subject is at (0.85, 0.5) of a 1200x600 image.
    upright = tmp_path / "upright.jpg"
    subject(upright)
    sideways = pyvips.Image.new_from_file(str(upright)).rot270().copy()
    sideways.set_type(pyvips.GValue.gint_type, "orientation", 6)
    sideways.jpegsave(str(tmp_path / "sideways.jpg"), keep="exif")
    image = render(Source(path=str(tmp_path / "sideways.jpg")), Preset("t", 100, 300, fit="cover"),
                   focus=(0.85, 0.5))
    assert (image.width, image.height) == (100, 300)
    assert red_share(image.crop(40, 140, 20, 20)) == 1.0


@pytest.mark.slow
def test_a_focal_point_url_end_to_end(server_factory, tmp_path):
    presets = write_presets(tmp_path)
    server = server_factory(env={"IMGPROXY_PRESETS": str(presets)})
    subject(server.originals / "subject.jpg")
    url = sign_url(server.key, "square", "subject", "png", server.base_url, focus=(0.85, 0.5))
    assert "/v/square@f0.85x0.5/subject.png?s=" in url
    r = server.get(url)
    assert r.status_code == 200, r.text
    assert red_share(decode(r.content)) > 0.95 * WHOLE
    assert list(server.variants.glob("square/*@f0.85x0.5/subject.png"))  # its own variant key
    plain = server.get(sign_url(server.key, "square", "subject", "png", server.base_url))
    assert red_share(decode(plain.content)) == 0
    smart = server.get(sign_url(server.key, "smart", "subject", "png", server.base_url))
    assert red_share(decode(smart.content)) > 0.95 * WHOLE

    def status(path: str) -> httpx.Response:
        from imgproxy.signing import sign

        return server.get(f"/v/{path}?s={sign(server.key, path)}")

    for path in ("square@f0.850x0.5/subject.png", "square@f.85x0.5/subject.png",
                 "square@f1.5x0.5/subject.png", "square@f0.85,0.5/subject.png"):
        r = status(path)
        assert r.status_code == 400 and "@f" in r.json()["detail"], path  # one spelling per point
    r = status("shop-plain@f0.5x0.5/subject.png")
    assert r.status_code == 400 and "fit" in r.json()["detail"]
    # The signature covers the point: moving it with the old signature is 403.
    assert server.get(url.replace("@f0.85x0.5", "@f0.8x0.5")).status_code == 403
