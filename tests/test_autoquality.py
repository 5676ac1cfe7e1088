"""``quality = "auto"`` on real libvips: outputs reach their target SSIM, and save bytes where they can."""

from __future__ import annotations

import pytest
import pyvips
from conftest import TESTIMAGES

from imgproxy.presets import DEFAULT_AUTO_TARGET, parse_presets
from imgproxy.render import Limits, RenderJob, Source, configure, render
from imgproxy.render.autoquality import LADDERS, choose, luma, luma_of, ssim

configure()
PHOTOS = [TESTIMAGES / "exif" / name for name in
          ("mei__Samsung_SM-J327T1.jpg", "exifsamples__canon_hdr_YES.jpg", "mei__Nikon_D5000.jpg")]


def presets(target: float | None = None) -> dict:
    auto = {"width": 1200, "height": 1200, "quality": "auto"}
    if target is not None:
        auto["auto_target"] = target
    return parse_presets({"auto": auto, "png": {"width": 1200, "height": 1200}})


def reference(source: Source) -> pyvips.Image:
    """The resized pixels every format encodes: the same render, lossless."""
    png = render(RenderJob(source, presets()["png"], "png", Limits())).body
    return pyvips.Image.new_from_buffer(png, "")


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["jpg", "webp"])
@pytest.mark.parametrize("path", PHOTOS, ids=lambda p: p.stem)
def test_auto_reaches_its_target_on_photos(path, fmt):
    source = Source(path=str(path))
    body = render(RenderJob(source, presets()["auto"], fmt, Limits())).body
    assert ssim(luma(reference(source)), luma_of(body)) >= DEFAULT_AUTO_TARGET


@pytest.mark.slow
def test_auto_avif_reaches_a_stricter_target():
    source = Source(path=str(PHOTOS[2]))
    body = render(RenderJob(source, presets(0.98)["auto"], "avif", Limits())).body
    assert ssim(luma(reference(source)), luma_of(body)) >= 0.98


def flat_illustration() -> pyvips.Image:
    """An AI-tool-like PNG: smooth gradients and flat shapes, no sensor noise."""
    xy = pyvips.Image.xyz(1024, 1024)
    r = (xy[0] / 4).cast("uchar")
    g = (xy[1] / 4).cast("uchar")
    b = (pyvips.Image.black(1024, 1024) + 160).cast("uchar")
    image = r.bandjoin([g, b])
    disc = ((xy[0] - 512) ** 2 + (xy[1] - 512) ** 2) < 200 ** 2
    return disc.ifthenelse([250, 220, 40], image).cast("uchar").copy(interpretation="srgb")


def test_flat_images_get_a_low_quality_that_still_reaches_the_target():
    image = flat_illustration()
    choice = choose(image, "jpg", 0.96, lambda im, q: im.jpegsave_buffer(Q=q, subsample_mode="on"))
    assert choice.ssim is not None and choice.ssim >= 0.96
    assert ssim(luma(image), luma_of(choice.body)) == pytest.approx(choice.ssim)
    assert choice.quality < 82  # the fixed default spends more bytes for nothing visible
    assert choice.probes == 4 and choice.encodes <= 3


def test_a_target_above_every_step_gets_the_top_unchecked():
    image = flat_illustration().crop(0, 0, 200, 200)
    choice = choose(image, "webp", 0.99999, lambda im, q: im.webpsave_buffer(Q=q))
    assert (choice.quality, choice.ssim, choice.encodes) == (LADDERS["webp"][-1], None, 5)  # searched whole


def test_tiny_images_are_not_searched():
    image = flat_illustration().crop(0, 0, 8, 8)
    choice = choose(image, "jpg", 0.96, lambda im, q: im.jpegsave_buffer(Q=q))
    assert (choice.quality, choice.encodes) == (LADDERS["jpg"][-1], 1)


def test_animations_get_the_formats_default():
    from imgproxy.render.plan import Header, make_plan

    plan = make_plan(Header("gifload", 100, 100, 5), presets()["auto"], "webp", Limits())
    assert (plan.target, plan.quality) == (None, 80)
    still = make_plan(Header("jpegload", 100, 100, 1), presets()["auto"], "webp", Limits())
    assert (still.target, still.quality) == (DEFAULT_AUTO_TARGET, LADDERS["webp"][-1])


@pytest.mark.parametrize("path", PHOTOS[:2], ids=lambda p: p.stem)
def test_ssim_agrees_with_scikit_image(path):
    """Our numpy SSIM is scikit-image's ``structural_similarity`` as the ladder search used it."""
    from skimage.metrics import structural_similarity

    image = pyvips.Image.thumbnail(str(path), 400).copy_memory()  # read once: the load is sequential
    a, b = luma(image), luma_of(image.jpegsave_buffer(Q=40))
    expected = structural_similarity(a.numpy(), b.numpy(), data_range=255, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    assert ssim(a, b) == pytest.approx(expected, abs=1e-6)
    assert ssim(a, a) == pytest.approx(1.0)
