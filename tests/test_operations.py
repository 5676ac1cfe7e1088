"""A preset's operations (imgproxy/render/operations.py): pixel tests with real libvips, on
still images and on every frame of animated GIF and WebP originals."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import pyvips
from artwork import decode

from imgproxy.presets import DEFAULT_SHARPEN, DEFAULT_TRIM, Preset, PresetError, load_presets, parse_presets
from imgproxy.render import FanoutJob, Limits, RenderJob, Source, configure, run_job

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "presets.toml"
#: The marked corner: a red block in the top-left of a 240x120 grey field.
W, H, BLOCK = 240, 120, 40
GREY = 128


@pytest.fixture(scope="module", autouse=True)
def _libvips() -> None:
    configure()


def marked(grey: int = GREY) -> pyvips.Image:
    """Grey with a red top-left block: where the block goes shows every turn."""
    field = pyvips.Image.black(W, H).new_from_image([grey, grey, grey]).copy(interpretation="srgb")
    return field.insert(pyvips.Image.black(BLOCK, BLOCK).new_from_image([220, 20, 20]), 0, 0)


def animation(path: Path, frames: list[pyvips.Image]) -> Path:
    """An animated GIF or WebP of ``frames`` (all one size), 100 ms each."""
    strip = pyvips.Image.arrayjoin(frames, across=1).copy()
    strip.set_type(pyvips.GValue.gint_type, "page-height", frames[0].height)
    strip.set_type(pyvips.GValue.array_int_type, "delay", [100] * len(frames))
    strip.set_type(pyvips.GValue.gint_type, "loop", 0)
    strip.write_to_file(str(path), **({"lossless": True} if path.suffix == ".webp" else {}))
    return path


def written(path: Path, frame: Callable[[int], pyvips.Image], frames: int) -> Path:
    """``frame(0)`` as a still image at ``path``, or ``frames`` of them as an animation."""
    if frames == 1:
        frame(0).write_to_file(str(path))
        return path
    return animation(path, [frame(i) for i in range(frames)])


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Source]:
    """The marked image as a PNG, and as three distinct frames (the grey differs) in a GIF and a WebP."""
    folder = tmp_path_factory.mktemp("ops")
    marked().pngsave(str(folder / "marked.png"))
    frames = [marked(grey) for grey in (96, 128, 160)]
    return {"png": Source(path=str(folder / "marked.png")),
            "gif": Source(path=str(animation(folder / "marked.gif", frames))),
            "webp": Source(path=str(animation(folder / "marked.webp", frames)))}


def render(source: Source, preset: Preset, fmt: str = "png", focus=None) -> list[pyvips.Image]:
    """The variant's frames."""
    body = run_job(RenderJob(source, preset, fmt, Limits(), focus=focus)).body
    image = pyvips.Image.new_from_buffer(body, "", **({"n": -1} if fmt in ("webp", "gif") else {}))
    h = image.get("page-height") if image.get_typeof("page-height") else image.height
    return [image.crop(0, top, image.width, h) for top in range(0, image.height, h)]


def red(image: pyvips.Image, x: int, y: int) -> bool:
    r, g, b = image(x, y)[:3]
    return r > 150 and g < 100 and b < 100


def corner(image: pyvips.Image) -> str:
    """Which corner holds the red block."""
    w, h = image.width - 1, image.height - 1
    found = [name for name, (x, y) in {"top-left": (2, 2), "top-right": (w - 2, 2), "bottom-left": (2, h - 2),
                                       "bottom-right": (w - 2, h - 2)}.items() if red(image, x, y)]
    assert len(found) == 1, found
    return found[0]


def energy(image: pyvips.Image) -> float:
    """High-frequency energy: the mean step between horizontal and vertical neighbours."""
    image = image.colourspace("b-w")[0].cast("float")
    w, h = image.width, image.height
    across = (image.crop(1, 0, w - 1, h) - image.crop(0, 0, w - 1, h)).abs().avg()
    down = (image.crop(0, 1, w, h - 1) - image.crop(0, 0, w, h - 1)).abs().avg()
    return float(across + down)


# --- The preset fields: validated at start-up, hashed only when set ---------------------------

OPERATIONS = {"trim": 10, "rotate": 90, "flip": True, "flop": True, "blur": 2.0, "sharpen": True,
              "grayscale": True, "pad": 8}


def test_the_shipped_digests_do_not_change():
    from test_presets import PINNED

    shipped = load_presets(SHIPPED)
    assert {name: shipped[name].digest for name in PINNED} == PINNED
    for name, preset in shipped.items():
        off = Preset(name, preset.width, preset.height, fit=preset.fit, quality=preset.quality, trim=None,
                     rotate=0, flip=False, flop=False, blur=0.0, sharpen=False, grayscale=False, pad=0)
        assert off.digest == preset.digest, name


@pytest.mark.parametrize("field", sorted(OPERATIONS))
def test_each_operation_changes_the_digest(field):
    base = Preset("a", 300, 300)
    digests = {base.digest}
    for value in (OPERATIONS[field], {"trim": 20, "rotate": 180, "blur": 3.0, "sharpen": 2.0,
                                      "pad": 9}.get(field)):
        if value is not None:
            digests.add(Preset("a", 300, 300, **{field: value}).digest)
    assert len(digests) == (2 if field in ("flip", "flop", "grayscale") else 3)


def test_true_is_the_default_setting():
    p = parse_presets({"x": {"width": 10, "height": 10, "sharpen": True, "trim": True}})["x"]
    assert (p.sharpen, p.trim) == (DEFAULT_SHARPEN, DEFAULT_TRIM)
    assert p.digest == Preset("x", 10, 10, sharpen=DEFAULT_SHARPEN, trim=DEFAULT_TRIM).digest
    assert Preset("x", 10, 10, sharpen=False, trim=False).digest == Preset("x", 10, 10).digest


@pytest.mark.parametrize("body,message", [
    ({"blur": 0.1}, "blur must be a sigma 0.3..100"),
    ({"blur": 101}, "blur must be"),
    ({"blur": True}, "blur must be"),
    ({"sharpen": 20}, "sharpen must be true, false or a sigma 0.6..10"),
    ({"sharpen": 0.5}, "sharpen must be"),
    ({"sharpen": "yes"}, "sharpen must be"),
    ({"blur": 2, "sharpen": True}, "blur and sharpen"),
    ({"rotate": 45}, "rotate must be one of 0, 90, 180, 270"),
    ({"rotate": -90}, "rotate must be"),
    ({"rotate": 90.0}, "rotate must be"),
    ({"flip": 1}, "flip must be true or false"),
    ({"flop": "yes"}, "flop must be"),
    ({"grayscale": "on"}, "grayscale must be"),
    ({"trim": 300}, "trim must be true, false or a threshold 0..255"),
    ({"trim": -1}, "trim must be"),
    ({"trim": "auto"}, "trim must be"),
    ({"pad": -1}, "pad must be an integer 0..1000"),
    ({"pad": 2.5}, "pad must be"),
    ({"background": "#00ff00"}, "background needs fit = 'contain' or a pad"),
])
def test_bad_operations_stop_start_up(body, message):
    with pytest.raises(PresetError, match=message) as info:
        parse_presets({"broken": {"width": 100, "height": 100, **body}})
    assert "broken" in str(info.value)


def test_the_documented_order_and_example():
    """docs/URLS.md lists the operations in the order the pipeline runs them, and its example loads."""
    import re
    import tomllib

    from imgproxy.presets import OPERATIONS as ORDER
    from imgproxy.render import operations, steps

    text = (SHIPPED.parent.parent / "docs" / "URLS.md").read_text()
    section = text.split("## Operations", 1)[1].split("\n## ", 1)[0]
    example = re.search(r"```toml\n(.*?)```", section, re.S)
    assert example is not None
    assert set(parse_presets(tomllib.loads(example.group(1)))) == {"avatar", "scan"}
    listed = [name for name in re.findall(r"`(\w+)`", section.split("```", 1)[0]) if name in ORDER]
    assert list(dict.fromkeys(listed[len(ORDER):])) == list(ORDER)  # after the opening list: the order
    run = [step.__name__ for step in steps.PIPELINE if step.__module__ == operations.__name__]
    assert ["trim", *run[:2], "flop", *run[2:]] == ["trim", "rotate", "flip", "flop", "blur", "sharpen",
                                                    "grayscale", "pad"] == list(ORDER)


# --- Pixels ------------------------------------------------------------------------------------

TURNS = [({"rotate": 90}, "top-right"), ({"rotate": 180}, "bottom-right"), ({"rotate": 270}, "bottom-left"),
         ({"flip": True}, "bottom-left"), ({"flop": True}, "top-right"), ({"rotate": 90, "flop": True}, "top-left"),
         ({}, "top-left")]


@pytest.mark.parametrize("kind", ["png", "gif", "webp"])
@pytest.mark.parametrize("ops,where", TURNS)
def test_turns_move_the_corner_on_every_frame(sources, kind, ops, where):
    frames = render(sources[kind], Preset("t", 240, 240, **ops), "png" if kind == "png" else "webp")
    assert len(frames) == (1 if kind == "png" else 3)
    quarter = ops.get("rotate") in (90, 270)
    for frame in frames:
        assert (frame.width, frame.height) == ((H, W) if quarter else (W, H))
        assert corner(frame) == where


def test_a_quarter_turn_fits_the_turned_box(sources):
    """The variant fills the preset's box: a landscape turned to portrait fits a portrait box whole."""
    assert [(f.width, f.height) for f in render(sources["png"], Preset("t", 60, 120, rotate=90))] == [(60, 120)]
    assert [(f.width, f.height) for f in render(sources["gif"], Preset("t", 60, 120, rotate=270), "webp")] \
        == [(60, 120)] * 3
    # cover and contain crop and pad the turned image to the box
    assert [(f.width, f.height) for f in render(sources["png"], Preset("t", 50, 50, fit="cover", rotate=90))] \
        == [(50, 50)]
    boxed = render(sources["png"], Preset("t", 100, 100, fit="contain", rotate=90, background="#00ff00"))[0]
    assert (boxed.width, boxed.height) == (100, 100) and boxed(5, 50)[:3] == [0, 255, 0]


def test_a_focal_point_is_of_the_original_and_turns_with_it(sources):
    """@f names a point of the upright original: the red corner stays in the crop after a half turn."""
    preset = Preset("t", 60, 60, fit="cover", rotate=180)
    kept = render(sources["png"], preset, focus=(0.05, 0.05))[0]
    assert (kept.width, kept.height) == (60, 60) and corner(kept) == "bottom-right"
    lost = render(sources["png"], preset, focus=(0.95, 0.95))[0]
    assert not any(red(lost, x, y) for x in range(0, 60, 4) for y in range(0, 60, 4))


def bordered(path: Path, frames: int = 1) -> Path:
    """A 100x50 pattern, off-centre on white, inside a 6 px ring of light grey (240)."""
    def one(i: int) -> pyvips.Image:
        xy = pyvips.Image.xyz(100, 50)
        pattern = ((xy[0] + xy[1] * 3 + i * 20) % 200).cast("uchar")
        content = pattern.bandjoin([pattern, pattern]).copy(interpretation="srgb")
        ring = pyvips.Image.black(112, 62).new_from_image([240, 240, 240]).copy(interpretation="srgb")
        white = pyvips.Image.black(300, 200).new_from_image([255, 255, 255]).copy(interpretation="srgb")
        return white.insert(ring.insert(content, 6, 6), 30, 90)
    return written(path, one, frames)


@pytest.mark.parametrize("kind", ["png", "gif", "webp"])
def test_trim_cuts_uniform_borders_within_its_threshold(tmp_path, kind):
    frames = 1 if kind == "png" else 3
    source = Source(path=str(bordered(tmp_path / f"bordered.{kind}", frames)))
    fmt = "png" if kind == "png" else "webp"
    sizes = {trim: [(f.width, f.height) for f in render(source, Preset("t", 400, 400, trim=trim), fmt)]
             for trim in (None, 10, 20)}
    assert sizes[None] == [(300, 200)] * frames
    assert sizes[10] == [(112, 62)] * frames  # the ring differs from white by 15: kept
    assert sizes[20] == [(100, 50)] * frames  # within 20: cut too
    # Trimmed, then fitted: the content fills the box.
    fitted = render(source, Preset("t", 50, 50, trim=20), fmt)
    assert [(f.width, f.height) for f in fitted] == [(50, 25)] * frames


def test_the_variant_size_bound_counts_the_operations():
    from imgproxy.render.plan import output_size

    assert output_size(3000, 2000, Preset("t", 300, 300)) == (300, 200)
    assert output_size(3000, 2000, Preset("t", 300, 300, rotate=90, pad=10)) == (220, 320)
    assert output_size(3000, 2000, Preset("t", 100, 300, rotate=270)) == (100, 150)
    # a trimmed original may come out any shape: the box bounds it
    assert output_size(3000, 2000, Preset("t", 300, 300, trim=10)) == (300, 300)
    assert output_size(200, 100, Preset("t", 300, 300, trim=10)) == (200, 100)


def test_trim_leaves_a_blank_image_whole(tmp_path):
    pyvips.Image.black(40, 30).new_from_image([9, 9, 9]).copy(interpretation="srgb").pngsave(str(tmp_path / "b.png"))
    frames = render(Source(path=str(tmp_path / "b.png")), Preset("t", 400, 400, trim=10))
    assert (frames[0].width, frames[0].height) == (40, 30)


@pytest.mark.parametrize("kind", ["png", "gif", "webp"])
def test_pad_adds_a_margin_in_the_background_colour(sources, kind):
    preset = Preset("t", 120, 120, pad=10, background="#00ff00")
    for frame in render(sources[kind], preset, "png" if kind == "png" else "webp"):
        assert (frame.width, frame.height) == (140, 80)  # 120x60 fitted, 10 px around
        for x, y in ((2, 2), (137, 77), (70, 3), (3, 40)):
            r, g, b = frame(x, y)[:3]
            assert g > 230 and r < 25 and b < 25, (x, y)
        assert red(frame, 14, 14) and not red(frame, 8, 8)


def test_a_transparent_pad(sources):
    frame = render(sources["png"], Preset("t", 120, 120, pad=4, background="#00000000"))[0]
    assert frame.bands == 4 and frame(1, 1)[3] == 0 and frame(60, 30)[3] == 255
    jpeg = render(sources["png"], Preset("t", 120, 120, pad=4, background="#00000000"), "jpg")[0]
    assert jpeg.bands == 3 and min(jpeg(1, 1)) > 240  # flattened on white


@pytest.mark.parametrize("kind", ["png", "gif", "webp"])
def test_grayscale_has_no_colour(sources, kind):
    frames = render(sources[kind], Preset("t", 240, 240, grayscale=True), "png" if kind == "png" else "webp")
    for frame in frames:
        if frame.bands >= 3:  # WebP always decodes to three bands
            r, g, b = frame(10, 10)[:3]
            assert abs(r - g) <= 2 and abs(g - b) <= 2
            assert (frame[0] - frame[1]).abs().max() <= 3 and (frame[1] - frame[2]).abs().max() <= 3
        else:
            assert frame.bands == 1
    if kind == "png":
        assert frames[0].bands == 1  # one band: smaller files


def soft(path: Path, frames: int = 1) -> Path:
    """8 px blocks, slightly soft (as a downscaled photo's edges are), a little different per frame."""
    def one(i: int) -> pyvips.Image:
        xy = pyvips.Image.xyz(160, 160)
        blocks = ((((xy[0] + i * 3) // 8 + xy[1] // 8) % 2) * 160 + 40).cast("uchar").gaussblur(1.2)
        return blocks.bandjoin([blocks, blocks]).copy(interpretation="srgb")
    return written(path, one, frames)


@pytest.mark.parametrize("kind", ["png", "gif", "webp"])
def test_blur_lowers_and_sharpen_raises_high_frequency_energy(tmp_path, kind):
    frames = 1 if kind == "png" else 3
    source = Source(path=str(soft(tmp_path / f"soft.{kind}", frames)))
    fmt = "png" if kind == "png" else "webp"
    plain = render(source, Preset("t", 160, 160), fmt)
    blurred = render(source, Preset("t", 160, 160, blur=2.0), fmt)
    sharpened = render(source, Preset("t", 160, 160, sharpen=True), fmt)
    harder = render(source, Preset("t", 160, 160, sharpen=2.0), fmt)
    assert len(plain) == len(blurred) == len(sharpened) == frames
    for p, b, s, s2 in zip(plain, blurred, sharpened, harder):
        assert (b.width, b.height) == (s.width, s.height) == (160, 160)
        assert energy(b) < 0.8 * energy(p)
        assert energy(s) > 1.05 * energy(p)
        assert energy(s2) > energy(s)


def test_blur_keeps_transparent_edges_clean(tmp_path):
    """Premultiplied: a red disc on transparency blurs into transparent red, not into a dark ring."""
    xy = pyvips.Image.xyz(100, 100)
    disc = (((xy[0] - 50) ** 2 + (xy[1] - 50) ** 2) < 30**2).ifthenelse([220, 20, 20, 255], [0, 0, 0, 0])
    disc.cast("uchar").copy(interpretation="srgb").pngsave(str(tmp_path / "disc.png"))
    image = render(Source(path=str(tmp_path / "disc.png")), Preset("t", 100, 100, blur=3.0))[0]
    r, g, b, a = image(50, 81)  # on the soft edge
    assert 0 < a < 255 and r > 180 and g < 60 and b < 60


def test_the_operations_run_together_in_their_order(sources):
    """Turned, greyed, padded: the margin is green (the pad comes after grayscale), the corner grey."""
    preset = Preset("t", 120, 120, rotate=90, flip=True, grayscale=True, pad=5, background="#00ff00")
    frame = render(sources["png"], preset)[0]
    assert (frame.width, frame.height) == (70, 130)
    assert frame(1, 1)[:3] == [0, 255, 0]
    r, g, b = frame(62, 122)[:3]  # rotate 90: top-right; flip: bottom-right
    assert r == g == b and r < GREY - 10  # the red block, grey and darker than the field


def test_fan_out_renders_the_operations_as_single_renders_do(sources, tmp_path):
    source = Source(path=str(bordered(tmp_path / "bordered.png")))
    targets = tuple((Preset("t", 120, 120, **ops), "png")
                    for ops in ({"trim": 20}, {"rotate": 90}, {"pad": 4}, {"blur": 1.0}, {}))
    fanned = run_job(FanoutJob(source, targets, Limits()))
    for (preset, fmt), result in zip(targets, fanned.results):
        single = run_job(RenderJob(source, preset, fmt, Limits()))
        assert (result.width, result.height) == (single.width, single.height), preset
        assert (decode(result.body) - decode(single.body)).abs().avg() < 4


# --- Through a real server ---------------------------------------------------------------------

PRESETS = """
[turned]
width = 120
height = 240
rotate = 90
flop = true
pad = 6
background = "#00ff00"

[soft]
width = 240
height = 240
trim = true
blur = 1.5
grayscale = true
"""


@pytest.mark.slow
def test_operations_end_to_end(server_factory, tmp_path):
    (tmp_path / "presets.toml").write_text(PRESETS)
    server = server_factory(env={"IMGPROXY_PRESETS": str(tmp_path / "presets.toml")})
    marked().pngsave(str(server.originals / "marked.png"))
    r = server.get(server.url("turned", "marked", "png"))
    assert r.status_code == 200, r.text
    image = decode(r.content)
    assert (image.width, image.height) == (132, 252)  # 120x240 turned and fitted, 6 px around
    assert image(2, 2)[:3] == [0, 255, 0]
    assert corner(image.crop(6, 6, 120, 240)) == "top-left"  # rotate 90 (top-right), then flop
    digests = {p.name: p.digest for p in load_presets(tmp_path / "presets.toml").values()}
    assert list(server.variants.glob(f"turned/{digests['turned']}/marked.png"))
    r = server.get(server.url("soft", "marked", "webp"))
    assert r.status_code == 200, r.text
    assert decode(r.content).width == W
    # A bad operation stops the server at start-up, naming the preset.
    (tmp_path / "bad.toml").write_text("[tilted]\nwidth = 10\nheight = 10\nrotate = 45\n")
    with pytest.raises(RuntimeError, match=r"tilted.*rotate"):
        server_factory(env={"IMGPROXY_PRESETS": str(tmp_path / "bad.toml")})
