"""The @w/@f path modifiers (imgproxy/modifiers.py): one spelling per variant."""

from __future__ import annotations

import pytest

from imgproxy.errors import BadRequest
from imgproxy.modifiers import check_modifiers, format_modifiers
from imgproxy.presets import Preset
from imgproxy.signing import canonical
from imgproxy.urls import VariantRequest, parse_path, variant_url


@pytest.mark.parametrize("path,width,focus", [
    ("web/a.webp", None, None),
    ("web@w640/a/b.webp", 640, None),
    ("web@f0.8x0.3/a.webp", None, (0.8, 0.3)),
    ("web@w640@f0x1/a.webp", 640, (0.0, 1.0)),
    ("web@f0.125x0.5/a.webp", None, (0.125, 0.5)),
])
def test_parse_and_canonical_round_trip(path, width, focus):
    request = parse_path(path)
    assert (request.preset, request.width, request.focus) == ("web", width, focus)
    assert request.canonical == path  # the signed string is the path, spelt one way


@pytest.mark.parametrize("path", [
    "web@/a.webp", "web@w0640/a.webp", "web@w/a.webp", "web@640/a.webp", "web@f0.8,0.3/a.webp",
    "web@f0.80x0.3/a.webp", "web@f.8x0.3/a.webp", "web@f1.0x0/a.webp", "web@f0.8x1.2/a.webp",
    "web@f0.8x0.3@w640/a.webp", "web@w640@w640/a.webp", "web@f0.1234x0.5/a.webp", "web@x/a.webp",
])
def test_other_spellings_are_400(path):
    with pytest.raises(BadRequest):
        parse_path(path)


def test_format_rounds_to_the_canonical_spelling():
    assert format_modifiers(640, (0.8, 0.30000001)) == "@w640@f0.8x0.3"
    assert format_modifiers(None, (1.0, 0.0)) == "@f1x0"
    with pytest.raises(BadRequest, match=r"0\.\.1"):
        format_modifiers(None, (1.5, 0))


def test_urls_carry_them_unescaped_and_sign_them():
    url = variant_url("k", "card", "shop/42", "webp", "https://i.example", width=640, focus=(0.8, 0.3))
    assert url.startswith("https://i.example/v/card@w640@f0.8x0.3/shop/42.webp?s=")
    assert VariantRequest("card", "shop/42", "webp", 640, (0.8, 0.3)).canonical == \
        canonical("card@w640@f0.8x0.3", "shop/42", "webp")


def test_the_preset_decides_what_is_allowed():
    ladder = Preset("card", 1280, 720, fit="cover", widths=(320, 640))
    check_modifiers(640, (0.5, 0.5), ladder)
    with pytest.raises(BadRequest, match="width 700 is not in preset 'card'"):
        check_modifiers(700, None, ladder)
    with pytest.raises(BadRequest, match="widths \\(none\\)"):
        check_modifiers(640, None, Preset("web", 1200, 1200))
    with pytest.raises(BadRequest, match="focal point needs fit = 'cover'"):
        check_modifiers(None, (0.5, 0.5), Preset("web", 1200, 1200))
