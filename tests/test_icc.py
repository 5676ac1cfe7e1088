import pytest
import pyvips
from conftest import corpus

from imgproxy.render.icc import description, needs_transform


def profile(name: str) -> bytes:
    return pyvips.Image.new_from_file(str(corpus(name))).get("icc-profile-data")


@pytest.mark.parametrize("name,desc,transform", [
    ("exif/mei__Apple_iPhone_4.jpg", "sRGB IEC61966-2.1", False),
    ("heic/libheif__rainbow-451x461.heic", "GIMP built-in sRGB", False),
    ("color/bimg__test_icc_prophoto.jpg", "ProPhoto RGB", True),
    ("exif/bimg__test_exif_full.jpg", "Display P3", True),
    ("heic/mei__Issue_437_dotnet.heic", "DCI-P3 D65 Gamut with sRGB Transfer", True),
    ("tiff/sharp__tifftag-photoshop.tiff", "Adobe RGB (1998)", True),
    ("color/sharp__Channel_digital_image_CMYK_color.jpg", "U.S. Web Coated (SWOP) v2", True),
    ("color/thumbor__grayscale-icc.jpg", "Dot Gain 20%", True),
])
def test_descriptions(name, desc, transform):
    data = profile(name)
    assert description(data).strip("\0").strip() == desc
    assert needs_transform(data) is transform


@pytest.mark.parametrize("data", [None, b"", b"\0" * 10, b"\0" * 128 + b"\xff\xff\xff\xff"])
def test_unreadable_profiles(data):
    assert needs_transform(data) is bool(data)


def test_skipping_the_srgb_transform_changes_nothing_visible():
    path = str(corpus("exif/mei__Apple_iPhone_4.jpg"))
    fast = pyvips.Image.thumbnail(path, 300)
    managed = pyvips.Image.thumbnail(path, 300, output_profile="srgb")
    assert (fast - managed).abs().max() <= 3


def test_a_wide_gamut_profile_does_change_pixels():
    path = str(corpus("color/bimg__test_icc_prophoto.jpg"))
    raw = pyvips.Image.thumbnail(path, 300)
    managed = pyvips.Image.thumbnail(path, 300, output_profile="srgb")
    assert (raw - managed).abs().avg() > 5
