"""Decoders that go through Pillow: APNG frames (libvips reads only an APNG's
first frame), and the hand-over of a Pillow image to libvips.

Pillow composes each APNG frame onto the canvas itself (dispose and blend
operations, partial frames), so every frame handed on is a full canvas;
libvips then resizes them all identically as one tall "page" image.
"""

from __future__ import annotations

import io
from typing import Any

import pyvips

from ..errors import Undecodable
from .jobs import Source
from .plan import Header


def to_vips(im: Any) -> pyvips.Image:
    """A loaded Pillow image as an 8-bit libvips image, its ICC profile kept."""
    mode = im.mode
    if mode not in ("RGB", "RGBA", "L", "LA"):
        im = im.convert("RGBA" if "A" in mode or "transparency" in im.info else "RGB")
    bands = len(im.mode)
    image = pyvips.Image.new_from_memory(im.tobytes(), im.width, im.height, bands, "uchar")
    image = image.copy(interpretation="b-w" if bands <= 2 else "srgb")
    icc = im.info.get("icc_profile")
    if icc:
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", bytes(icc))
    return image


def probe_apng(source: Source) -> Header:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(source.read()), formats=["PNG"]) as im:
            frames = getattr(im, "n_frames", 1)
            alpha = "A" in im.mode or "transparency" in im.info
            return Header(loader="apng", width=im.width, height=im.height, frames=frames, alpha=alpha)
    except (OSError, ValueError, SyntaxError) as exc:
        raise Undecodable("the APNG original cannot be decoded", internal=str(exc)[:120]) from None


def decode_apng(source: Source, frames: int) -> pyvips.Image:
    """The first ``frames`` frames as one tall image with ``page-height``,
    ``delay`` (ms per frame) and ``loop`` (0: forever) set, as libvips' own
    animated loaders leave them."""
    from PIL import Image

    pages: list[pyvips.Image] = []
    delays: list[int] = []
    try:
        with Image.open(io.BytesIO(source.read()), formats=["PNG"]) as im:
            loop = int(im.info.get("loop", 0))
            for i in range(frames):
                im.seek(i)
                delays.append(int(im.info.get("duration", 100)))
                pages.append(to_vips(im.convert("RGBA")))
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise Undecodable("the APNG original cannot be decoded", internal=str(exc)[:120]) from None
    image = pyvips.Image.arrayjoin(pages, across=1) if len(pages) > 1 else pages[0]
    image = image.copy(interpretation="srgb")
    if len(pages) > 1:
        image.set_type(pyvips.GValue.gint_type, "page-height", pages[0].height)
        image.set_type(pyvips.GValue.array_int_type, "delay", delays)
        image.set_type(pyvips.GValue.gint_type, "loop", loop)
    return image
