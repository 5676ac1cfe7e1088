from pathlib import Path

import pytest

from imgproxy.presets import DEFAULT_QUALITY, Preset, PresetError, load_presets, parse_presets

SHIPPED = Path(__file__).resolve().parent.parent / "config" / "presets.toml"

EXPECTED = {
    "thumbnail": (300, 300, "inside"), "web": (1200, 1200, "inside"), "preview": (800, 600, "inside"),
    "small": (800, 600, "inside"), "medium": (2000, 2000, "inside"), "large": (4000, 4000, "inside"),
    "thumb-square": (200, 200, "cover"), "optimized": (1920, 1080, "inside"),
    "dalle": (1024, 1024, "inside"), "dalle-hq": (2048, 2048, "inside"),
    "sora": (1280, 720, "inside"), "sora-hq": (1920, 1080, "inside"),
    "sd": (768, 768, "inside"), "sd-hq": (1536, 1536, "inside"),
}


def test_shipped_presets():
    presets = load_presets(SHIPPED)
    assert {n: (p.width, p.height, p.fit) for n, p in presets.items()} == EXPECTED
    assert presets["thumbnail"].quality["jpg"] == 85
    assert presets["web"].quality["webp"] == 90
    assert presets["preview"].quality["jpg"] == 85
    assert all(not p.enlarge and p.strip for p in presets.values())
    assert presets["small"].quality == dict(DEFAULT_QUALITY)


def test_digest_follows_the_definition_not_the_name():
    a = Preset("a", 100, 100)
    assert Preset("b", 100, 100).digest == a.digest
    assert Preset("a", 100, 101).digest != a.digest
    assert Preset("a", 100, 100, fit="cover").digest != a.digest
    assert Preset("a", 100, 100, quality={"webp": 81}).digest != a.digest
    assert Preset("a", 100, 100, quality={"webp": DEFAULT_QUALITY["webp"]}).digest == a.digest


def test_one_quality_number_sets_webp_and_jpeg():
    p = parse_presets({"x": {"width": 10, "height": 10, "quality": 70}})["x"]
    assert (p.quality["webp"], p.quality["jpg"], p.quality["avif"]) == (70, 70, DEFAULT_QUALITY["avif"])


@pytest.mark.parametrize("body,message", [
    ({"height": 10}, "width and height"),
    ({"width": 0, "height": 10}, "width"),
    ({"width": 10.5, "height": 10}, "width"),
    ({"width": 10, "height": 99999}, "height"),
    ({"width": 10, "height": 10, "fit": "stretch"}, "fit"),
    ({"width": 10, "height": 10, "quality": {"bmp": 50}}, "unknown format"),
    ({"width": 10, "height": 10, "quality": {"webp": 101}}, "quality.webp"),
    ({"width": 10, "height": 10, "quality": "high"}, "quality"),
    ({"width": 10, "height": 10, "enlarge": "yes"}, "enlarge"),
    ({"width": 10, "height": 10, "colour": "red"}, "unknown keys"),
])
def test_bad_presets_name_the_preset(body, message):
    with pytest.raises(PresetError, match=message) as info:
        parse_presets({"broken": body})
    assert "broken" in str(info.value)


def test_bad_files(tmp_path):
    with pytest.raises(PresetError, match="cannot read"):
        load_presets(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[x\n")
    with pytest.raises(PresetError, match=r"bad\.toml"):
        load_presets(bad)
    with pytest.raises(PresetError, match="no presets"):
        parse_presets({})
    with pytest.raises(PresetError, match="preset name"):
        parse_presets({"Bad Name": {"width": 1, "height": 1}})


#: Digests of the shipped presets since the first release: variant keys on disk and
#: in buckets use them, so a change here re-renders every variant.
PINNED = {"thumbnail": "9650c9b43d7b", "web": "d0230fcd8ba2", "small": "dfd274dccb7d",
          "thumb-square": "50d81abb4d3d", "sd-hq": "784b4280f14b"}


def test_digests_are_pinned():
    presets = load_presets(SHIPPED)
    assert {name: presets[name].digest for name in PINNED} == PINNED


def test_a_new_field_at_its_default_changes_no_digest():
    """A field added to Preset later is hashed only when a preset sets it."""
    import dataclasses

    from imgproxy import presets as module

    Grown = dataclasses.make_dataclass(
        "Grown", [("vignette", float, dataclasses.field(default=0.0))], bases=(Preset,), frozen=True)
    assert Grown("a", 300, 300).digest == Preset("a", 300, 300).digest
    assert Grown("a", 300, 300, vignette=0.5).digest != Preset("a", 300, 300).digest
    assert module.FORMATS[:4] == ("webp", "avif", "jpg", "png")


def test_encoding_fields_change_the_digest_only_when_they_change_the_output():
    from imgproxy.presets import DEFAULT_AUTO_TARGET

    base = Preset("a", 300, 300)
    assert Preset("a", 300, 300, chroma="420").digest == base.digest  # the default: same bytes
    assert Preset("a", 300, 300, chroma="444").digest != base.digest
    auto = Preset("a", 300, 300, quality={"webp": "auto"})
    assert auto.digest != base.digest and auto.auto_target == DEFAULT_AUTO_TARGET
    # The target in force is hashed, so a later change of the default re-renders auto presets.
    assert Preset("a", 300, 300, quality={"webp": "auto"}, auto_target=DEFAULT_AUTO_TARGET).digest == auto.digest
    assert Preset("a", 300, 300, quality={"webp": "auto"}, auto_target=0.98).digest != auto.digest
    assert Preset("a", 300, 300, quality={"jpg": "auto"}).digest != auto.digest
    assert base.auto_target is None


def test_quality_auto():
    p = parse_presets({"x": {"width": 10, "height": 10, "quality": "auto", "auto_target": 0.97}})["x"]
    assert (p.quality["webp"], p.quality["jpg"], p.quality["avif"], p.quality["png"]) == ("auto",) * 3 + (100,)
    assert p.auto_target == 0.97
    for body, message in [({"quality": {"png": "auto"}}, "quality.png"),
                          ({"auto_target": 0.97}, "needs a quality"),
                          ({"quality": "auto", "auto_target": 1.5}, "auto_target"),
                          ({"quality": "auto", "auto_target": "high"}, "auto_target")]:
        with pytest.raises(PresetError, match=message):
            parse_presets({"x": {"width": 10, "height": 10, **body}})


def test_art_direction_fields_at_their_defaults_change_no_digest():
    """gravity, background, widths and watermark (issue 15) left at their defaults
    hash exactly as before, so no shipped variant is re-rendered."""
    shipped = load_presets(SHIPPED)
    for name, preset in shipped.items():
        explicit = Preset(name, preset.width, preset.height, fit=preset.fit, enlarge=preset.enlarge,
                          strip=preset.strip, quality=preset.quality, gravity="centre",
                          background="#ffffff", widths=(), watermark=None)
        assert explicit.digest == preset.digest, name
    assert {name: shipped[name].digest for name in PINNED} == PINNED
    # A ladder renders nothing differently, so it is not hashed; the rest is.
    base = Preset("a", 1280, 720, fit="cover")
    assert Preset("a", 1280, 720, fit="cover", widths=(320, 640)).digest == base.digest
    assert Preset("a", 1280, 720, fit="cover", gravity="attention").digest != base.digest
    assert Preset("a", 1280, 720, fit="contain", background="#000000").digest != \
        Preset("a", 1280, 720, fit="contain").digest


@pytest.mark.parametrize("body,message", [
    ({"gravity": "attention"}, "gravity needs fit = 'cover'"),
    ({"fit": "cover", "gravity": "up"}, "gravity must be one of"),
    ({"background": "#000000"}, "background needs fit = 'contain'"),
    ({"fit": "contain", "background": "black"}, "background must be"),
    ({"widths": [640, 320]}, "widths must be increasing"),
    ({"widths": [320, 2000]}, "widths must be increasing"),
    ({"watermark": {"position": "south"}}, "watermark must be a table"),
    ({"watermark": {"image": "file:x.png", "opacity": 2}}, "watermark.opacity"),
    ({"watermark": {"image": "file:x.png", "position": "top"}}, "watermark.position"),
    ({"watermark": {"image": "file:missing.png"}}, "watermark"),
])
def test_bad_art_direction_fields(body, message):
    with pytest.raises(PresetError, match=message) as info:
        parse_presets({"broken": {"width": 1000, "height": 1000, **body}})
    assert "broken" in str(info.value)
