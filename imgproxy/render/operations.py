"""A preset's operations, each a small step that returns its input when it is off.

They run in this order (docs/URLS.md, "Operations"); ``trim`` before the
resize, the rest among the pipeline's steps (:data:`.steps.PIPELINE`):

    trim       cut borders of the top-left pixel's colour, before fitting: the
               whole original is decoded (no shrink-on-load), every frame cut alike
    rotate     90, 180 or 270 degrees clockwise, after EXIF orientation; the fit
               used the turned box (:attr:`.plan.Plan.fit_box`), so the variant fills
               the preset's box
    flip/flop  upside down / mirrored
    blur       Gaussian, sigma in output pixels; premultiplied, so no dark fringes
    sharpen    libvips' sharpen (on lightness; flat areas untouched, so no noise)
    grayscale  one band (two with alpha)
    pad        a margin of ``background`` around the fitted image (after the
               letterbox and the watermark)

Animations are a strip of frames: each frame is turned, blurred and padded on
its own (:func:`.crop.per_frame`), so nothing bleeds from one frame to the next.
"""

from __future__ import annotations

import pyvips

from .crop import embed, page_height, per_frame
from .plan import Plan


def trim(image: pyvips.Image, plan: Plan) -> pyvips.Image:
    """Cut the borders whose colour is the top-left pixel's, within ``plan.trim``;
    one box for every frame (the union of theirs), and nothing from a blank image."""
    if plan.trim is None:
        return image
    h = page_height(image)
    boxes = []
    for top in range(0, image.height, h):
        frame = image.crop(0, top, image.width, h)
        opaque = frame.bands - 1 if frame.hasalpha() else frame.bands
        background = frame(0, 0)[:opaque]
        left, up, width, height = frame.find_trim(threshold=plan.trim, background=background)
        if width > 0 and height > 0:
            boxes.append((left, up, left + width, up + height))
    if not boxes:
        return image  # one colour throughout: nothing would be left
    left, up = min(b[0] for b in boxes), min(b[1] for b in boxes)
    right, down = max(b[2] for b in boxes), max(b[3] for b in boxes)
    if (left, up, right, down) == (0, 0, image.width, h):
        return image
    return per_frame(image, down - up, lambda frame: frame.crop(left, up, right - left, down - up))


def rotate(image: pyvips.Image, plan: Plan) -> pyvips.Image:
    if plan.rotate == 0:
        return image
    turn = {90: "rot90", 180: "rot180", 270: "rot270"}[plan.rotate]
    frame_height = image.width if plan.rotate in (90, 270) else page_height(image)
    return per_frame(image, frame_height, lambda frame: getattr(frame, turn)())


def flip(image: pyvips.Image, plan: Plan) -> pyvips.Image:
    """``flip`` turns every frame upside down; ``flop`` mirrors it left to right."""
    if plan.flip:
        image = per_frame(image, page_height(image), lambda frame: frame.flip("vertical"))
    if plan.flop:
        image = image.flip("horizontal")  # a strip mirrors frame by frame as it is
    return image


def blur(image: pyvips.Image, plan: Plan) -> pyvips.Image:
    if not plan.blur:
        return image

    def each(frame: pyvips.Image) -> pyvips.Image:
        if not frame.hasalpha():
            return frame.gaussblur(plan.blur)
        return frame.premultiply().gaussblur(plan.blur).unpremultiply().cast("uchar")

    return per_frame(image, page_height(image), each)


def sharpen(image: pyvips.Image, plan: Plan) -> pyvips.Image:
    if not plan.sharpen:
        return image

    def each(frame: pyvips.Image) -> pyvips.Image:
        out = frame.sharpen(sigma=plan.sharpen)
        if out.interpretation != frame.interpretation:
            out = out.colourspace(frame.interpretation)
        return out.cast("uchar") if out.format != "uchar" else out

    return per_frame(image, page_height(image), each)


def grayscale(image: pyvips.Image, plan: Plan) -> pyvips.Image:
    if not plan.grayscale or image.interpretation == "b-w":
        return image
    return image.colourspace("b-w")


def pad(image: pyvips.Image, plan: Plan) -> pyvips.Image:
    if not plan.pad:
        return image
    return embed(image, plan, plan.pad, plan.pad, image.width + 2 * plan.pad, page_height(image) + 2 * plan.pad)
