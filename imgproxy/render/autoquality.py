"""``quality = "auto"``: per image, the lowest quality whose output stays above a target.

The metric is SSIM on the luma (BT.601 Y, Gaussian window σ 1.5, the
constants of Wang et al. 2004), between the resized image about to be encoded
(the reference) and the decoded candidate. libvips computes it, as
scikit-image's ``structural_similarity`` does (``tests/test_autoquality.py``
checks the two agree, and they cost the same), so the install carries no
scipy or scikit-image.

Quality is searched on a short ladder per format, assuming SSIM grows with
quality:

1. *Search on a proxy.* Bisection over the ladder's first fifteen steps (four
   probes) on a mosaic of four 256 px tiles cut from the image at full
   resolution: a crop keeps the scale of the coding artefacts, which a
   downscale would not. Images of up to twice the mosaic's pixels are
   searched whole instead.
2. *Verify on the output.* The image is encoded at the step found and its
   SSIM checked; below the target, the next step up is tried, at most twice,
   and then the ladder's top is encoded without a check.

So a variant costs four small encodes and one to three full ones, and every
checked output reaches the target. ``bench/cases/encoding.py`` measures the cost
against one fixed-quality encode and the bytes saved. Images smaller than
the SSIM window (11 px) get the ladder's top.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyvips

#: Qualities the search may pick, per format, low to high. AVIF's scale is harsher.
#: Sixteen steps: four probes bisect the fifteen below the top.
LADDERS: dict[str, tuple[int, ...]] = {
    "jpg": (30, 40, 48, 55, 60, 65, 70, 74, 78, 81, 84, 87, 90, 92, 94, 96),
    "webp": (30, 40, 48, 55, 60, 65, 70, 74, 78, 81, 84, 87, 90, 92, 94, 96),
    "avif": (25, 32, 38, 43, 47, 50, 53, 56, 59, 62, 65, 68, 72, 76, 82, 90),
}
_SIGMA = 1.5
_RADIUS = int(3.5 * _SIGMA + 0.5)  # scipy's Gaussian truncated at 3.5 σ, as scikit-image uses it
_WINDOW = 2 * _RADIUS + 1  # 11 px


@dataclass(frozen=True)
class Choice:
    body: bytes
    quality: int
    ssim: float | None  # None: the top of the ladder, encoded without a check
    encodes: int  # full-size encodes
    probes: int  # encodes of the proxy


_TILE = 256
_VERIFY = 2  # steps up the ladder tried on the output before its top


def choose(image: pyvips.Image, fmt: str, target: float,
           encode_at: Callable[[pyvips.Image, int], bytes]) -> Choice:
    """Encode ``image`` with ``encode_at(image, q)`` at the lowest ladder quality reaching ``target``."""
    ladder = LADDERS[fmt]
    if min(image.width, image.height) < _WINDOW:
        return Choice(encode_at(image, ladder[-1]), ladder[-1], None, 1, 0)
    image = image.copy_memory()  # decode and resize once, not once per encode
    proxy = _mosaic(image)
    if proxy is None:
        step, found, probes = _bisect(image, ladder, target, encode_at)
        if found is not None:
            return Choice(found[0], ladder[step], found[1], probes, 0)
        return Choice(encode_at(image, ladder[-1]), ladder[-1], None, probes + 1, 0)
    step, _, probes = _bisect(proxy, ladder, target, encode_at)
    reference = luma(image)
    encodes = 0
    for i in range(step, min(step + _VERIFY + 1, len(ladder) - 1)):
        body = encode_at(image, ladder[i])
        encodes += 1
        score = ssim(reference, luma_of(body))
        if score >= target:
            return Choice(body, ladder[i], score, encodes, probes)
    return Choice(encode_at(image, ladder[-1]), ladder[-1], None, encodes + 1, probes)


def _bisect(image: pyvips.Image, ladder: tuple[int, ...], target: float,
            encode_at: Callable[[pyvips.Image, int], bytes]) -> tuple[int, tuple[bytes, float] | None, int]:
    """The lowest step below the top whose encode of ``image`` reaches ``target`` (the top if none
    does), that encode with its SSIM, and the number of probes (four for sixteen steps)."""
    reference = luma(image)
    passed: dict[int, tuple[bytes, float]] = {}
    probes = 0
    lo, hi = 0, len(ladder) - 1  # hi: the top, taken unchecked if nothing below passes
    while lo < hi:
        mid = (lo + hi) // 2
        body = encode_at(image, ladder[mid])
        probes += 1
        score = ssim(reference, luma_of(body))
        if score >= target:
            passed[mid] = (body, score)
            hi = mid
        else:
            lo = mid + 1
    return hi, passed.get(hi), probes


def _mosaic(image: pyvips.Image) -> pyvips.Image | None:
    """Four full-resolution tiles from the centres of the image's quarters, 2×2, on the
    16 px grid (JPEG's MCU); None when the image is small enough to search whole."""
    if image.width * image.height <= 2 * 4 * _TILE * _TILE or min(image.width, image.height) < 2 * _TILE:
        return None
    tiles = []
    for fy in (0.25, 0.75):
        for fx in (0.25, 0.75):
            left = int(image.width * fx - _TILE / 2) // 16 * 16
            top = int(image.height * fy - _TILE / 2) // 16 * 16
            tiles.append(image.extract_area(left, top, _TILE, _TILE))
    import pyvips

    return pyvips.Image.arrayjoin(tiles, across=2).copy_memory()


def ssim(a: pyvips.Image, b: pyvips.Image) -> float:
    """Mean SSIM of two luma planes (0..255), as Wang et al. define it: Gaussian-weighted
    local statistics (population covariance), averaged over the pixels at least a window
    radius from the edge. Only those pixels are averaged, so the edge mode does not matter."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    width, height = a.width - 2 * _RADIUS, a.height - 2 * _RADIUS
    stats = a.bandjoin([b, a * a, b * b, a * b]).convsep(_window(), precision="float")
    mx, my, xx, yy, xy = stats.crop(_RADIUS, _RADIUS, width, height).bandsplit()
    mxy, mm = mx * my, mx * mx + my * my
    return float(((mxy * 2 + c1) * ((xy - mxy) * 2 + c2) / ((mm + c1) * (xx + yy - mm + c2))).avg())


def _window() -> pyvips.Image:
    """The normalised 1-D Gaussian, applied along both axes by ``convsep``."""
    import math

    import pyvips

    taps = [math.exp(-0.5 * (i / _SIGMA) ** 2) for i in range(-_RADIUS, _RADIUS + 1)]
    return pyvips.Image.new_from_list([[t / sum(taps) for t in taps]])


def luma_of(body: bytes) -> pyvips.Image:
    import pyvips

    return luma(pyvips.Image.new_from_buffer(body, "", access="sequential"))


def luma(image: pyvips.Image) -> pyvips.Image:
    """The BT.601 luma of an 8-bit sRGB or grey image as float, alpha flattened onto white,
    in memory (the search compares one reference with several candidates)."""
    if image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1))
    if image.bands >= 3:
        image = image[0] * 0.299 + image[1] * 0.587 + image[2] * 0.114
    return image.cast("float").copy_memory()
