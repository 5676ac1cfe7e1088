"""Watermarks (imgproxy/render/watermark.py): present where the preset puts them, on every frame."""

from __future__ import annotations

import pytest
import pyvips
from artwork import decode, mark, subject, write_presets
from conftest import corpus, start_server

from imgproxy.presets import Preset, PresetError, Watermark, load_presets
from imgproxy.render import Limits, RenderJob, Source, configure, run_job


def blue(image: pyvips.Image, x: int, y: int) -> bool:
    r, g, b = image(x, y)[:3]
    return b > 200 and r < 60 and g < 60


@pytest.fixture(scope="module")
def presets(tmp_path_factory):
    configure()
    folder = tmp_path_factory.mktemp("wm")
    subject(folder / "subject.jpg")
    return folder, load_presets(write_presets(folder))


def test_the_mark_is_at_its_position_and_absent_without_it(presets):
    folder, loaded = presets
    source = Source(path=str(folder / "subject.jpg"))
    marked = decode(run_job(RenderJob(source, loaded["shop"], "jpg", Limits())).body)
    plain = decode(run_job(RenderJob(source, loaded["shop-plain"], "jpg", Limits())).body)
    assert (marked.width, marked.height) == (plain.width, plain.height) == (400, 200)
    # scale 0.25 of the shorter side (200): the 100x50 mark becomes 50x25, its
    # opaque part 40x15, 16 px in from the bottom-right corner.
    right, bottom = 400 - 16, 200 - 16
    assert blue(marked, right - 25, bottom - 12)
    assert not blue(plain, right - 25, bottom - 12)
    assert not blue(marked, 16 + 25, bottom - 12) and not blue(marked, right - 25, 16 + 12)
    assert not blue(marked, right - 2, bottom - 2)  # its transparent border stays transparent
    assert abs(marked.crop(0, 0, 300, 150).avg() - plain.crop(0, 0, 300, 150).avg()) < 0.5


def test_opacity_blends_and_every_frame_is_marked(presets):
    folder, loaded = presets
    faint = Preset("faint", 400, 400, watermark=Watermark("file:mark.png", position="north-west",
                                                          margin=0, opacity=0.5, scale=0.5))
    faint = faint.with_watermark_file(folder / "mark.png")
    grey = pyvips.Image.black(200, 200).new_from_image([128, 128, 128]).copy(interpretation="srgb")
    grey.pngsave(str(folder / "grey.png"))
    image = decode(run_job(RenderJob(Source(path=str(folder / "grey.png")), faint, "png", Limits())).body)
    r, _, b = image(40, 25)[:3]
    assert abs(r - 64) <= 2 and abs(b - 191) <= 2  # half blue over grey, not black fringes
    assert image.bands == 3  # an opaque variant stays opaque
    anim = Source(path=str(corpus("animated/sharp__rotating-squares.webp")))
    body = run_job(RenderJob(anim, loaded["shop"], "webp", Limits())).body
    frames = pyvips.Image.new_from_buffer(body, "", n=-1)
    h, n = frames.get("page-height"), frames.get("n-pages")
    assert n > 1
    for i in range(n):  # 80x80 frames: a 20x10 mark, 16 px in
        assert blue(frames, 80 - 16 - 10, i * h + 80 - 16 - 5), i


def test_the_marks_content_is_in_the_digest_and_a_missing_mark_stops_start_up(tmp_path):
    presets = write_presets(tmp_path)
    before = load_presets(presets)["shop"].digest
    mark(tmp_path / "mark.png", colour=(255, 0, 0))
    after = load_presets(presets)["shop"].digest
    assert before != after  # a new mark: new variant keys
    assert load_presets(presets)["shop-plain"].digest == Preset("x", 400, 400).digest
    (tmp_path / "mark.png").unlink()
    with pytest.raises(PresetError, match=r"shop.*watermark"):
        load_presets(presets)


@pytest.mark.slow
def test_a_mark_from_the_originals_store(tmp_path):
    presets = tmp_path / "presets.toml"
    presets.write_text('[shop]\nwidth = 400\nheight = 400\nwatermark = { image = "brand/mark" }\n')
    originals = tmp_path / "originals"
    (originals / "brand").mkdir(parents=True)
    (tmp_path / "a").mkdir()
    with pytest.raises(RuntimeError, match="brand/mark"):  # missing: the server does not start
        start_server(tmp_path / "a", originals=originals, env={"IMGPROXY_PRESETS": str(presets)})
    mark(originals / "brand/mark.png")
    subject(originals / "subject.jpg")
    (tmp_path / "b").mkdir()
    server = start_server(tmp_path / "b", originals=originals, env={"IMGPROXY_PRESETS": str(presets)})
    try:
        r = server.get(server.url("shop", "subject", "jpg"))
        assert r.status_code == 200, r.text
        # default placement: south-east, margin 16, scale 0.2 (40x20), opacity 0.6
        pixel = decode(r.content)(400 - 16 - 20, 200 - 16 - 10)
        assert pixel[2] > pixel[0] + 60
        key = next(server.variants.glob("shop/*/subject.jpg"))
        assert key.parent.name == load_presets_digest(presets, originals)
    finally:
        server.stop()


def load_presets_digest(presets, originals) -> str:
    """The digest the server uses: the preset with its mark read from the store."""
    shop = load_presets(presets)["shop"]
    return shop.with_watermark_file(originals / "brand/mark.png").digest
