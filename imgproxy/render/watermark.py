"""The watermark step: a preset's mark laid over the resized variant.

The mark is decoded once per worker process and kept (keyed by its content
hash, which is also in the preset's digest). Per render it is scaled so its
longer side is ``scale`` x the output's shorter side, resized premultiplied
(no dark fringes at its edges), faded by ``opacity`` through its alpha, and
composited ``over`` every frame, ``margin`` pixels in from ``position``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pyvips

from ..errors import ImgproxyError
from ..presets import POSITIONS, Watermark
from .crop import page_height
from .plan import Plan

_MARKS: dict[str, pyvips.Image] = {}


def _mark(mark: Watermark) -> pyvips.Image:
    """The decoded mark: sRGB with alpha, 8-bit, in memory; once per process."""
    image = _MARKS.get(mark.sha256)
    if image is not None:
        return image
    if not mark.path:
        raise ImgproxyError(f"watermark {mark.image!r} was not resolved at start-up")
    data = Path(mark.path).read_bytes()
    if hashlib.sha256(data).hexdigest() != mark.sha256:
        raise ImgproxyError(f"watermark {mark.path} changed since start-up; restart to use it")
    image = pyvips.Image.new_from_buffer(data, "")
    if image.interpretation not in ("srgb", "b-w") or image.format != "uchar":
        image = image.colourspace("srgb").cast("uchar")
    if image.bands < 3:
        image = image.colourspace("srgb")
    if not image.hasalpha():
        image = image.bandjoin_const([255])
    image = image.copy_memory()
    _MARKS[mark.sha256] = image
    return image


def watermark(image: pyvips.Image, plan: Plan) -> pyvips.Image:
    if plan.watermark is None:
        return image
    mark, spec = _mark(plan.watermark), plan.watermark
    width, height = image.width, page_height(image)
    factor = spec.scale * min(width, height) / max(mark.width, mark.height)
    mark = mark.premultiply().resize(factor).unpremultiply()
    mark = mark[:3].bandjoin(mark[3] * spec.opacity).cast("uchar")
    fx, fy = POSITIONS[spec.position]
    left = _offset(fx, width, mark.width, spec.margin)
    top = _offset(fy, height, mark.height, spec.margin)
    overlay = mark.embed(left, top, width, height, extend="background", background=[0, 0, 0, 0])
    if height != image.height:
        overlay = overlay.replicate(1, image.height // height)  # every frame
    base = image if image.bands >= 3 else image.colourspace("srgb")
    out = base.composite2(overlay, "over")
    if not base.hasalpha():
        out = out[: base.bands]  # the base was opaque: so is the result
    out = out.cast("uchar") if out.format != "uchar" else out
    if height != image.height:
        out = out.copy()
        out.set_type(pyvips.GValue.gint_type, "page-height", height)
    return out


def _offset(fraction: float, outer: int, inner: int, margin: int) -> int:
    """Where a mark of size ``inner`` starts: ``margin`` in from an edge, or centred."""
    if fraction == 0:
        return min(margin, max(outer - inner, 0))
    if fraction == 1:
        return max(outer - inner - margin, 0)
    return max((outer - inner) // 2, 0)
