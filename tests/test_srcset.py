"""Width ladders: every width renders exactly that wide; srcset() and `imgproxy sign --srcset`."""

from __future__ import annotations

import re

import pytest
from artwork import decode, subject, write_presets
from conftest import KEY, add_original, corpus
from test_cli import imgproxy

from imgproxy import sign_url, srcset
from imgproxy.signing import sign


def test_srcset_helper():
    text = srcset("k", "card", "shop/42", "webp", [320, 640], "https://i.example", focus=(0.8, 0.3))
    first, second = text.split(", ")
    assert first == sign_url("k", "card", "shop/42", "webp", "https://i.example", width=320, focus=(0.8, 0.3)) + " 320w"
    assert second.endswith(" 640w") and "/v/card@w640@f0.8x0.3/shop/42.webp?s=" in second


def test_sign_width_focus_and_srcset(tmp_path):
    env = {"IMGPROXY_KEYS": KEY, "IMGPROXY_PRESETS": str(write_presets(tmp_path))}
    out = imgproxy("sign", "card", "shop/42", "--format", "jpg", "--width", "640", "--focus", "0.8,0.3", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == sign_url(KEY, "card", "shop/42", "jpg", width=640, focus=(0.8, 0.3))
    out = imgproxy("sign", "card", "shop/42", "--srcset", "--base-url", "https://i.example", env=env)
    assert out.stdout.strip() == srcset(KEY, "card", "shop/42", "webp", [320, 640, 960, 1280], "https://i.example")
    bad = imgproxy("sign", "card", "shop/42", "--width", "700", env=env)
    assert bad.returncode == 2 and "width 700" in bad.stderr
    assert imgproxy("sign", "shop", "shop/42", "--srcset", env=env).returncode == 2  # no ladder
    assert imgproxy("sign", "shop", "shop/42", "--focus", "0.5,0.5", env=env).returncode == 2  # no crop


@pytest.mark.slow
def test_every_width_of_a_ladder_comes_out_exactly_that_wide(server_factory, tmp_path):
    server = server_factory(env={"IMGPROXY_PRESETS": str(write_presets(tmp_path))})
    add_original(server, corpus("large/mei__Issue_266.jpg"), "photo")  # 5760x3840
    subject(server.originals / "portrait.jpg")
    for preset, widths, aspect in (("gallery", (320, 640, 960, 1280, 1920), 3840 / 5760),
                                   ("card", (320, 640, 960, 1280), 720 / 1280)):
        for width in widths:
            r = server.get(sign_url(server.key, preset, "photo", "webp", server.base_url, width=width))
            assert r.status_code == 200, r.text
            image = decode(r.content)
            assert (image.width, image.height) == (width, round(width * aspect)), (preset, width)
    keys = sorted(p.parent.name.split("@")[1] for p in server.variants.glob("gallery/*/photo.webp"))
    assert keys == sorted(f"w{w}" for w in (320, 640, 960, 1280, 1920))
    # Outside the ladder, or a ladder on a preset without one: 400, even when signed.
    for path in ("gallery@w700/photo.webp", "gallery@w3840/photo.webp", "square@w320/photo.webp"):
        r = server.get(f"/v/{path}?s={sign(server.key, path)}")
        assert r.status_code == 400 and re.search(r"width \d+ is not in", r.json()["detail"]), path
    # The width is signed: another width with the same signature is 403.
    url = sign_url(server.key, "gallery", "photo", "webp", server.base_url, width=640)
    assert server.get(url.replace("@w640", "@w960")).status_code == 403
