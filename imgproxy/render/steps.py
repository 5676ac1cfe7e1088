"""The render pipeline: small pure steps ``(image, plan) -> image``.

Each step returns its input untouched when it has nothing to do. pyvips
images are immutable, so steps share nothing but their arguments.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pyvips

from ..formats import PLUGINS
from . import plugins
from .crop import crop_to_focus, letterbox, page_height, thumbnail_args
from .jobs import Source
from .metadata import field_names
from .operations import blur, flip, grayscale, pad, rotate, sharpen, trim
from .plan import Header, Plan
from .watermark import watermark

Step = Callable[[pyvips.Image, Plan], pyvips.Image]

#: Working colour space of every variant. Embedded ICC profiles (Adobe RGB,
#: ProPhoto, P3, CMYK) are converted to it; untagged CMYK uses libvips'
#: built-in CMYK profile, so it never comes out inverted.
OUTPUT_PROFILE = "srgb"


def load(source: Source, header: Header, plan: Plan) -> pyvips.Image:
    """Decode at (close to) the target size: JPEG, WebP and HEIF shrink on load.

    ``thumbnail`` also applies EXIF orientation, converts CMYK to sRGB, and
    transforms an embedded profile that is not sRGB (see :mod:`.icc`). A
    preset that trims decodes the whole original instead: its borders are
    unknown until then.
    """
    if plan.trim is not None:
        return resize(load_shared(source, header, 1.0, plan.frames), plan)
    width, options = thumbnail_args(plan, header.upright)  # fit and gravity: crop.py
    if header.icc:
        options["output_profile"] = OUTPUT_PROFILE
    if header.loader in PLUGINS:
        return _thumbnail_pages(plugins.decode(source, header, plan), width, options)
    loader_options = "n=-1" if plan.frames > 1 else ""
    if source.data is not None:
        return pyvips.Image.thumbnail_buffer(source.data, width, option_string=loader_options, **options)
    path = f"{source.path}[{loader_options}]" if loader_options else source.path
    return pyvips.Image.thumbnail(path, width, **options)


def load_shared(source: Source, header: Header, scale: float, frames: int) -> pyvips.Image:
    """One decode for several variants: at ``scale`` of the source (shrink-on-load
    where the format has it), upright and in sRGB, held in memory."""
    box = math.ceil(max(header.width, header.height) * scale) + 1  # +1: never a pixel short
    options: dict[str, object] = dict(height=box, size="down")
    if header.icc:
        options["output_profile"] = OUTPUT_PROFILE
    if header.loader in PLUGINS:
        image = _thumbnail_pages(plugins.decode(source, header, scale=scale), box, options)
    else:
        loader_options = "n=-1" if frames > 1 else ""
        if source.data is not None:
            image = pyvips.Image.thumbnail_buffer(source.data, box, option_string=loader_options, **options)
        else:
            path = f"{source.path}[{loader_options}]" if loader_options else source.path
            image = pyvips.Image.thumbnail(path, box, **options)
    return image.copy_memory()


def _thumbnail_pages(image: pyvips.Image, width: int, options: dict[str, object]) -> pyvips.Image:
    """``thumbnail_image`` for a decoded image, one page at a time when it is
    animated (``thumbnail_image`` would treat the page stack as one tall image)."""
    if not image.get_typeof("page-height") or image.get("page-height") >= image.height:
        return image.thumbnail_image(width, **options)
    page = image.get("page-height")
    frames = [image.crop(0, y, image.width, page).thumbnail_image(width, **options)
              for y in range(0, image.height, page)]
    out = pyvips.Image.arrayjoin(frames, across=1).copy()
    out.set_type(pyvips.GValue.gint_type, "page-height", frames[0].height)
    for name in ("delay", "loop"):
        if image.get_typeof(name):
            out.set_type(image.get_typeof(name), name, image.get(name))
    return out


def resize(base: pyvips.Image, plan: Plan) -> pyvips.Image:
    """``plan``'s variant from a decoded, upright base (see :func:`load_shared`):
    every fit and gravity, a focal point too, as :func:`load` does; trimmed first."""
    base = trim(base, plan)
    width, options = thumbnail_args(plan, (base.width, page_height(base)))
    return _thumbnail_pages(base, width, options)


def to_srgb(image: pyvips.Image, plan: Plan) -> pyvips.Image:
    """8-bit sRGB (or 8-bit grey): 16-bit, Lab, CMYK without ICC and the like."""
    if image.interpretation in ("srgb", "b-w") and image.format == "uchar":
        return image
    target = "b-w" if image.interpretation in ("b-w", "grey16") else "srgb"
    image = image.colourspace(target)
    if image.format != "uchar":
        image = image.cast("uchar")
    return image


def flatten(image: pyvips.Image, plan: Plan) -> pyvips.Image:
    """Formats without alpha get the image composed over white, not black."""
    if not plan.flatten or not image.hasalpha():
        return image
    return image.flatten(background=[255] * (image.bands - 1))


def strip_gps(image: pyvips.Image, plan: Plan) -> pyvips.Image:
    """Presets that keep metadata still never leak location (EXIF IFD3 = GPS)."""
    if plan.strip:
        return image  # the encoder drops all metadata
    gps = [name for name in field_names(image) if name.startswith("exif-ifd3-")]
    if not gps:
        return image
    image = image.copy()
    for name in gps:
        image.remove(name)
    return image


#: The steps after the resize, in order; docs/URLS.md ("Operations") lists the preset's among them.
PIPELINE: tuple[Step, ...] = (to_srgb, rotate, flip, crop_to_focus, blur, sharpen, grayscale, letterbox,
                              watermark, pad, flatten, strip_gps)
