"""``quality = "auto"``: per image, the lowest quality whose output stays above a target.

The metric is SSIM on the luma (BT.601 Y, Gaussian window σ 1.5, the
constants of Wang et al. 2004) from scikit-image, between the resized image
about to be encoded (the reference) and the decoded candidate. Quality is
searched on a short ladder per format, by bisection: three probes pick the
lowest of the ladder's first seven steps that reaches the target, assuming
SSIM grows with quality. When none does, the ladder's top is encoded
without a check, so a variant costs at most four encodes. The search runs on
the output itself (no proxy), so the target it reports is the one the bytes
reach; ``bench/encoding.py`` measures its cost against one fixed-quality
encode and the bytes it saves.

Images smaller than the SSIM window (11 px) get the ladder's top.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np
    import pyvips

#: Qualities the search may pick, per format, low to high. AVIF's scale is harsher.
LADDERS: dict[str, tuple[int, ...]] = {
    "jpg": (40, 50, 60, 70, 78, 85, 90, 95),
    "webp": (40, 50, 60, 70, 78, 85, 90, 95),
    "avif": (30, 38, 45, 52, 58, 64, 72, 85),
}
_WINDOW = 11  # scikit-image's Gaussian window at σ 1.5


@dataclass(frozen=True)
class Choice:
    body: bytes
    quality: int
    ssim: float | None  # None: the top of the ladder, encoded without a check
    encodes: int


def choose(image: pyvips.Image, fmt: str, target: float, encode_at: Callable[[int], bytes]) -> Choice:
    """Encode ``image`` with ``encode_at(q)`` at the lowest ladder quality reaching ``target``."""
    ladder = LADDERS[fmt]
    if min(image.width, image.height) < _WINDOW:
        return Choice(encode_at(ladder[-1]), ladder[-1], None, 1)
    reference = luma(image)
    passed: dict[int, tuple[bytes, float]] = {}
    encodes = 0
    lo, hi = 0, len(ladder) - 1  # hi: the top, taken unchecked if nothing below passes
    while lo < hi:
        mid = (lo + hi) // 2
        body = encode_at(ladder[mid])
        encodes += 1
        score = ssim(reference, luma_of(body))
        if score >= target:
            passed[mid] = (body, score)
            hi = mid
        else:
            lo = mid + 1
    if hi in passed:
        body, score = passed[hi]
        return Choice(body, ladder[hi], score, encodes)
    return Choice(encode_at(ladder[-1]), ladder[-1], None, encodes + 1)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Mean SSIM of two luma planes (0..255), as Wang et al. define it."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(  # type: ignore[no-untyped-call]
        a, b, data_range=255, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False))


def luma_of(body: bytes) -> np.ndarray:
    import pyvips

    return luma(pyvips.Image.new_from_buffer(body, "", access="sequential"))


def luma(image: pyvips.Image) -> np.ndarray:
    """The BT.601 luma of an 8-bit sRGB or grey image as float32, alpha flattened onto white."""
    import numpy as np

    if image.hasalpha():
        image = image.flatten(background=[255] * (image.bands - 1))
    if image.bands >= 3:
        image = image[0] * 0.299 + image[1] * 0.587 + image[2] * 0.114
    plane = image.cast("float").write_to_memory()
    return np.frombuffer(plane, dtype=np.float32).reshape(image.height, image.width)
