"""The render pipeline on real libvips, with originals from the shared corpus."""

import csv
from pathlib import Path

import malformed
import pytest
import pyvips
from conftest import TESTIMAGES, corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from imgproxy.errors import ImgproxyError, TooLarge, Undecodable, Unsupported
from imgproxy.presets import FORMATS, Preset, load_presets
from imgproxy.render import Limits, RenderJob, Source, configure, render
from imgproxy.render.plan import output_size

PRESETS = load_presets(Path(__file__).resolve().parent.parent / "config" / "presets.toml")
configure()


def run(source, preset="web", fmt="webp", limits=None):
    preset = PRESETS[preset] if isinstance(preset, str) else preset
    src = Source(path=str(source)) if isinstance(source, Path) else Source(data=source)
    return render(RenderJob(src, preset, fmt, limits or Limits()))


def decode(body: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(body, "")


# --- orientation ----------------------------------------------------------

QUADRANTS = {"tl": (255, 0, 0), "tr": (0, 255, 0), "bl": (0, 0, 255), "br": (255, 255, 255)}


def quadrant_image(w=400, h=300) -> pyvips.Image:
    def block(rgb):
        return (pyvips.Image.black(w // 2, h // 2) + list(rgb)).cast("uchar")

    top = block(QUADRANTS["tl"]).join(block(QUADRANTS["tr"]), "horizontal")
    bottom = block(QUADRANTS["bl"]).join(block(QUADRANTS["br"]), "horizontal")
    return top.join(bottom, "vertical").copy(interpretation="srgb")


# Stored pixels for each EXIF orientation: the inverse of what a viewer applies.
STORED = {
    1: lambda i: i,
    2: lambda i: i.fliphor(),
    3: lambda i: i.rot180(),
    4: lambda i: i.flipver(),
    5: lambda i: i.rot90().fliphor(),  # transpose
    6: lambda i: i.rot270(),
    7: lambda i: i.rot270().fliphor(),  # transverse
    8: lambda i: i.rot90(),
}


def assert_upright(image: pyvips.Image) -> None:
    w, h = image.width, image.height
    spots = {"tl": (w // 4, h // 4), "tr": (3 * w // 4, h // 4),
             "bl": (w // 4, 3 * h // 4), "br": (3 * w // 4, 3 * h // 4)}
    for name, (x, y) in spots.items():
        got = image.getpoint(x, y)[:3]
        assert all(abs(a - b) < 40 for a, b in zip(got, QUADRANTS[name])), (name, got)


@pytest.mark.parametrize("orientation", range(1, 9))
@pytest.mark.parametrize("fmt", ["jpg", "webp"])
def test_every_exif_orientation_comes_out_upright(orientation, fmt):
    stored = STORED[orientation](quadrant_image()).copy()
    stored.set_type(pyvips.GValue.gint_type, "orientation", orientation)
    saver = stored.jpegsave_buffer if fmt == "jpg" else stored.webpsave_buffer
    original = saver(Q=95, keep="exif")
    assert decode(original).get("orientation") == orientation
    out = decode(run(original, "web", "png").body)
    assert (out.width, out.height) == (400, 300)
    assert_upright(out)


@pytest.mark.parametrize("family,reference,others", [
    ("orientation/recurser__Portrait_{}.jpg", "1", ["0", "2", "3", "6", "7"]),
    ("orientation/recurser__Landscape_{}.jpg", "1", ["0", "5"]),
    ("orientation/pillow__hopper_orientation_{}.webp", "2", ["5", "7", "8"]),
])
def test_real_camera_orientations_match_the_upright_reference(family, reference, others):
    ref = decode(run(corpus(family.format(reference)), "thumbnail", "png").body)
    for other in others:
        out = decode(run(corpus(family.format(other)), "thumbnail", "png").body)
        assert (out.width, out.height) == (ref.width, ref.height), other
        assert (out - ref).abs().avg() < 12, other


# What a viewer applies to stored pixels for each orientation.
DISPLAY = {
    2: lambda i: i.fliphor(), 6: lambda i: i.rot90(), 7: lambda i: i.rot270().fliphor(),
    8: lambda i: i.rot270(),
}


@pytest.mark.parametrize("orientation", [2, 6, 7, 8])
def test_png_exif_orientation(orientation):
    # imgproxy's samples: the same pixels as orientation-0, only the eXIf tag differs.
    ref = decode(run(corpus("orientation/imgproxy__orientation-0.png"), "thumbnail", "png").body)
    out = decode(run(corpus(f"orientation/imgproxy__orientation-{orientation}.png"), "thumbnail", "png").body)
    expected = DISPLAY[orientation](ref)
    assert (out.width, out.height) == (expected.width, expected.height)
    assert (out - expected).abs().avg() < 3


# --- colour ---------------------------------------------------------------

def mean_rgb(body: bytes) -> list[float]:
    image = decode(body)
    return [image[i].avg() for i in range(3)]


def test_cmyk_with_and_without_profile_is_not_inverted():
    tagged = mean_rgb(run(corpus("color/sharp__Channel_digital_image_CMYK_color.jpg"), "thumbnail", "png").body)
    no_profile = corpus("color/sharp__Channel_digital_image_CMYK_color_no_profile.jpg")
    untagged = mean_rgb(run(no_profile, "thumbnail", "png").body)
    assert all(abs(a - b) < 12 for a, b in zip(tagged, untagged)), (tagged, untagged)
    # The picture is a mostly light scene; inverted CMYK comes out dark.
    assert sum(tagged) / 3 > 100


@pytest.mark.parametrize("name", ["color/thumbor__cmyk.jpg", "color/pillow__pil_sample_cmyk.jpg",
                                  "tiff/sharp__fogra-0-100-100-0.tif"])
def test_cmyk_comes_out_as_srgb(name):
    out = decode(run(corpus(name), "thumbnail", "jpg").body)
    assert out.bands == 3 and out.interpretation == "srgb"


def test_fogra_red_is_red():
    # 0% C, 100% M, 100% Y, 0% K is a strong red in any CMYK profile.
    r, g, b = mean_rgb(run(corpus("tiff/sharp__fogra-0-100-100-0.tif"), "thumbnail", "png").body)
    assert r > 180 and g < 90 and b < 90, (r, g, b)


def test_icc_profile_is_applied():
    # The pixels alone put red elsewhere; only the embedded profile puts it at 12 o'clock.
    out = decode(run(corpus("color/linku__red-at-12-oclock-with-color-profile.png"), "thumbnail", "png").body)
    r, g, b = out.getpoint(out.width // 2, out.height // 10)[:3]
    assert r > 150 and g < 100 and b < 100, (r, g, b)


def test_wide_gamut_profiles_are_converted_and_dropped():
    out = decode(run(corpus("color/bimg__test_icc_prophoto.jpg"), "thumbnail", "jpg").body)
    assert "icc-profile-data" not in out.get_fields()


@pytest.mark.parametrize("name", ["color/thumbor__16bit.png", "color/sharp__tbgn2c16.png"])
def test_16_bit_becomes_8_bit(name):
    out = decode(run(corpus(name), "thumbnail", "png").body)
    assert out.format == "uchar"


def test_alpha_is_flattened_on_white_for_jpeg():
    out = decode(run(corpus("color/sharp__full-transparent.png"), "thumbnail", "jpg").body)
    assert out.bands == 3 and out.avg() > 250
    assert decode(run(corpus("color/sharp__full-transparent.png"), "thumbnail", "webp").body).hasalpha()


# --- metadata -------------------------------------------------------------

def _gps_files():
    with open(TESTIMAGES / "MANIFEST.tsv") as f:
        for row in csv.DictReader(f, delimiter="\t"):
            probe = row["pillow"]
            if "; GPS" in probe and "decode=ok" in probe and row["category"] in ("exif", "orientation", "webp"):
                yield f"{row['category']}/{row['filename']}"


GPS_FILES = sorted(_gps_files()) if (TESTIMAGES / "MANIFEST.tsv").exists() else []


@pytest.mark.parametrize("name", GPS_FILES)
@pytest.mark.parametrize("fmt", FORMATS)
def test_no_gps_reaches_a_variant(name, fmt):
    body = run(corpus(name), "thumbnail", fmt).body
    fields = decode(body).get_fields()
    assert not [f for f in fields if f.startswith("exif-ifd3")]
    assert "exif-data" not in fields and "xmp-data" not in fields
    assert b"GPS" not in body


def test_gps_files_found():
    assert len(GPS_FILES) >= 3


def test_keeping_metadata_still_drops_gps():
    keep = Preset("keep", 300, 300, strip=False)
    name = GPS_FILES[0]
    fields = decode(run(corpus(name), keep, "jpg").body).get_fields()
    assert "exif-data" in fields
    assert not [f for f in fields if f.startswith("exif-ifd3")]


# --- sizes ----------------------------------------------------------------

EXPECTED_3000x2000 = {
    "thumbnail": (300, 200), "web": (1200, 800), "preview": (800, 533), "small": (800, 533),
    "medium": (2000, 1333), "large": (3000, 2000), "thumb-square": (200, 200),
    "optimized": (1620, 1080), "dalle": (1024, 683), "dalle-hq": (2048, 1365),
    "sora": (1080, 720), "sora-hq": (1620, 1080), "sd": (768, 512), "sd-hq": (1536, 1024),
}


def test_expected_sizes_cover_every_preset():
    assert set(EXPECTED_3000x2000) == set(PRESETS)
    for name, size in EXPECTED_3000x2000.items():
        assert output_size(3000, 2000, PRESETS[name]) == size, name


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("preset", sorted(EXPECTED_3000x2000))
def test_exact_output_dimensions(landscape, preset, fmt):
    out = decode(run(landscape, preset, fmt).body)
    assert (out.width, out.height) == EXPECTED_3000x2000[preset]
    loader = out.get("vips-loader")
    assert loader.startswith({"webp": "webp", "avif": "heif", "jpg": "jpeg", "png": "png", "gif": "gif"}[fmt])


def test_portrait_and_small_sources_are_never_enlarged():
    portrait = pyvips.Image.black(100, 400).copy(interpretation="b-w").pngsave_buffer()
    out = decode(run(portrait, "web", "webp").body)
    assert (out.width, out.height) == (100, 400)
    out = decode(run(portrait, "thumbnail", "webp").body)
    assert (out.width, out.height) == (75, 300)


# --- errors ---------------------------------------------------------------

def test_unknown_format_is_415():
    with pytest.raises(Unsupported):
        run(b"this is not an image at all")


def test_truncated_header_is_422():
    with pytest.raises(Undecodable):
        run(corpus("corrupt/sharp__corrupt-header.jpg").read_bytes())


def test_pixel_limit_is_checked_before_decoding():
    with pytest.raises(TooLarge) as info:
        run(corpus("bomb/sharp__giant-image.jpg"))
    assert info.value.extra["limit"] == "max_source_pixels"


def test_frame_limit():
    with pytest.raises(TooLarge) as info:
        run(corpus("animated/libvips__cogs.gif"), "thumbnail", "webp", Limits(max_frames=2))
    assert info.value.extra["limit"] == "max_frames"


def test_output_limit():
    with pytest.raises(TooLarge) as info:
        run(corpus("large/mei__Issue_266.jpg"), "large", "webp", Limits(max_output_pixels=1_000_000))
    assert info.value.extra["limit"] == "max_output_pixels"


def test_animation_is_kept_in_webp_first_frame_elsewhere():
    gif = corpus("animated/libvips__cogs.gif")
    webp = pyvips.Image.new_from_buffer(run(gif, "thumbnail", "webp").body, "", n=-1)
    assert webp.get("n-pages") > 1
    png = decode(run(gif, "thumbnail", "png").body)
    assert "n-pages" not in png.get_fields() or png.get("n-pages") == 1


def test_iphone_heic_decodes():
    out = decode(run(corpus("heic/exifsamples__IMG_5195.HEIC"), "thumbnail", "jpg").body)
    assert max(out.width, out.height) == 300


def test_svg_is_rasterised():
    body = run(corpus("svg/libvips__logo.svg"), "thumbnail", "png").body
    assert body.startswith(b"\x89PNG")


# --- metadata never breaks a render ------------------------------------------

KEEP = Preset("keep", 64, 64, strip=False)
_junk = st.binary(max_size=300)
_exif_strings = st.lists(
    st.tuples(st.sampled_from([0x010F, 0x0110, 0x0131, 0x010E, 0x013B, 0x8298]), st.binary(max_size=40)),
    max_size=4,
).map(lambda items: malformed.tiff_exif([(tag, 2, value + b"\x00") for tag, value in items]))
_exif = st.one_of(_junk, _exif_strings)


def _render_all(body: bytes) -> None:
    for preset in (PRESETS["thumbnail"], KEEP):
        for fmt in ("jpg", "webp", "png"):
            try:
                out = run(body, preset, fmt)
            except ImgproxyError as exc:
                assert 400 <= exc.status < 500, exc
                continue
            assert decode(out.body).width > 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.binary(min_size=1, max_size=79).filter(lambda k: b"\x00" not in k), text=_junk,
       itxt=_junk, exif=_exif, icc=_junk)
def test_png_metadata_of_any_bytes_never_breaks_a_render(key, text, itxt, exif, icc):
    _render_all(malformed.png(key, text, itxt, exif, icc))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exif=_exif, xmp=_junk, icc=_junk, comment=_junk)
def test_jpeg_metadata_of_any_bytes_never_breaks_a_render(exif, xmp, icc, comment):
    _render_all(malformed.jpeg(exif, xmp, icc, comment))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(exif=_exif, xmp=_junk, icc=_junk)
def test_webp_metadata_of_any_bytes_never_breaks_a_render(exif, xmp, icc):
    _render_all(malformed.webp(exif, xmp, icc))


def test_a_png_text_key_that_is_not_utf8_renders():
    body = malformed.png(text_key=b"k\xe9y", text=b"caf\xe9")
    for preset in (PRESETS["web"], KEEP):
        assert decode(run(body, preset, "webp").body).width == 16


def test_a_libvips_older_than_8_15_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian 12's 8.14 lacks the savers' ``keep``: GPS could survive; refuse it at start."""
    monkeypatch.setattr(pyvips, "at_least_libvips", lambda major, minor: (major, minor) <= (8, 14))
    with pytest.raises(RuntimeError, match=r"libvips .* is too old: imgproxy needs 8\.15"):
        configure(1)
