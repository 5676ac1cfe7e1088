"""Originals decoded outside libvips (:data:`imgproxy.formats.PLUGINS`), by loader name.

Each returns a full-resolution (or preview-sized, for RAW) upright image that
the pipeline resizes like any other; the probe has already checked the limits.
"""

from __future__ import annotations

import math

import pyvips

from . import jxl, pillow, raw
from .jobs import Source
from .plan import Header, Plan, scale_of
from .source import decode_hevc


def decode(source: Source, header: Header, plan: Plan | None = None, scale: float = 1.0) -> pyvips.Image:
    """``header.loader``'s decoder, for ``plan`` (or at ``scale`` for a shared decode)."""
    if plan is not None:
        scale = scale_of(header, plan)
    if header.loader == "raw":
        return raw.decode(source, need=math.ceil(max(header.width, header.height) * scale))
    if header.loader == "jxl":
        return jxl.decode(source)
    if header.loader == "apng":
        return pillow.decode_apng(source, plan.frames if plan is not None else 1)
    return decode_hevc(source)
