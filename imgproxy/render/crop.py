"""How a variant fills its box: ``fit`` and ``gravity``.

    inside   fit in the box (libvips ``thumbnail``, no crop)
    cover    fill the box and crop: ``centre``, ``attention`` and ``entropy``
             are libvips' own crops; a compass point or a focal point scales
             to cover (no crop) and :func:`crop_to_focus` cuts the box so the
             point is as near its centre as the edges allow
    contain  fit in the box, then :func:`letterbox` pads it to the exact box
    fill     stretch to the exact box (``size="force"``)

The same options serve a load from the original (:func:`thumbnail_args`
with the header's upright size) and a fan-out resize from a decoded base.
Animations are a vertical strip of frames; the crop and the padding are
applied to each frame.
"""

from __future__ import annotations

from collections.abc import Callable

import pyvips

from .plan import Plan

#: "No limit" for the side that does not constrain a cover scale.
_UNBOUNDED = 10_000_000


def thumbnail_args(plan: Plan, upright: tuple[int, int]) -> tuple[int, dict[str, object]]:
    """``thumbnail``'s width and options for ``plan``, for a source whose
    upright size is ``upright``."""
    size = "both" if plan.enlarge else "down"
    width, height = plan.fit_box  # turned by a later rotate step
    if plan.fit == "fill":
        return width, dict(height=height, size="force", crop="none")
    if plan.fit == "cover" and plan.gravity == "focus":
        w, h = upright
        if w * height <= h * width:  # taller than the box: the width decides
            return width, dict(height=_UNBOUNDED, size=size, crop="none")
        return _UNBOUNDED, dict(height=height, size=size, crop="none")
    crop = plan.gravity if plan.fit == "cover" else "none"
    return width, dict(height=height, size=size, crop=crop)


def page_height(image: pyvips.Image) -> int:
    if image.get_typeof("page-height") != 0:
        h = int(image.get("page-height"))
        if 0 < h < image.height and image.height % h == 0:
            return h
    return int(image.height)


def per_frame(image: pyvips.Image, frame_height: int,
              each: Callable[[pyvips.Image], pyvips.Image]) -> pyvips.Image:
    """``each(frame)`` on every frame of a strip, joined back into a strip (a
    lone frame's page height, if it has one, follows its new size)."""
    h = page_height(image)
    if h == image.height:
        out = each(image)
        if out.get_typeof("page-height") and out.get("page-height") != out.height:
            out = out.copy()
            out.set_type(pyvips.GValue.gint_type, "page-height", out.height)
        return out
    frames = [each(image.crop(0, top, image.width, h)) for top in range(0, image.height, h)]
    out = pyvips.Image.arrayjoin(frames, across=1).copy()
    out.set_type(pyvips.GValue.gint_type, "page-height", frame_height)
    return out


def crop_to_focus(image: pyvips.Image, plan: Plan) -> pyvips.Image:
    """Cut the box out of a cover-scaled image, centred on the focal point."""
    if plan.gravity != "focus" or plan.focus is None:
        return image
    w, h = image.width, page_height(image)
    bw, bh = min(plan.width, w), min(plan.height, h)
    if (bw, bh) == (w, h):
        return image
    fx, fy = plan.focus
    left = min(max(round(fx * w - bw / 2), 0), w - bw)
    top = min(max(round(fy * h - bh / 2), 0), h - bh)
    return per_frame(image, bh, lambda frame: frame.crop(left, top, bw, bh))


def letterbox(image: pyvips.Image, plan: Plan) -> pyvips.Image:
    """``contain``: the fitted image centred in the exact box, on ``background``."""
    if plan.fit != "contain":
        return image
    h = page_height(image)
    if (image.width, h) == (plan.width, plan.height):
        return image
    left, top = (plan.width - image.width) // 2, (plan.height - h) // 2
    return embed(image, plan, left, top, plan.width, plan.height)


def embed(image: pyvips.Image, plan: Plan, left: int, top: int, width: int, height: int) -> pyvips.Image:
    """Every frame placed at ``left``, ``top`` of a ``width`` x ``height`` frame of ``background``."""
    if image.bands < 3:
        image = image.colourspace("srgb")
    r, g, b, a = plan.background
    if a < 255 and not image.hasalpha():
        image = image.bandjoin_const([255])
    colour = [r, g, b, a] if image.hasalpha() else [r, g, b]
    return per_frame(image, height, lambda frame: frame.embed(
        left, top, width, height, extend="background", background=colour))
