"""JPEG XL originals through ``pillow-jxl-plugin``: the libvips wheel has no libjxl.

Chosen over ``imagecodecs`` after decoding the seven ``jxl/`` corpus files with
both (2 cores, one thread): 1.03 s against 0.96 s in total, a wash, but
pillow-jxl hands over the embedded ICC profile (imagecodecs drops it, so XYB,
P3 and CMYK files would come out in the wrong colours) and decodes only the
first frame of an animation (imagecodecs decodes all 60 frames of
``animation_spline.jxl``). JXL output is not offered: this libvips cannot
write it.

pillow-jxl decodes the whole image as soon as it is opened, so the size is
read here first from the codestream's SizeHeader (ISO 18181-1 D.2), and the
pixel cap holds before any decode.
"""

from __future__ import annotations

import io
import struct

import pyvips

from ..errors import TooLarge, Undecodable
from .jobs import Source
from .plan import Header, Limits

_RATIOS = {1: (1, 1), 2: (12, 10), 3: (4, 3), 4: (3, 2), 5: (16, 9), 6: (5, 4), 7: (2, 1)}


class _Bits:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int) -> int:
        value = 0
        for i in range(n):
            byte = self.data[(self.pos + i) >> 3]  # IndexError when short
            value |= ((byte >> ((self.pos + i) & 7)) & 1) << i
        self.pos += n
        return value

    def u32(self) -> int:
        bits = (9, 13, 18, 30)[self.read(2)]
        return 1 + self.read(bits)


def _codestream(data: bytes) -> bytes:
    """The start of the codestream, out of the ISO BMFF container if there is one."""
    if data[:2] == b"\xff\x0a":
        return data
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack_from(">I4s", data, pos)
        start = pos + 8
        if size == 1:
            (size,) = struct.unpack_from(">Q", data, start)
            start += 8
        if kind == b"jxlc":
            return data[start:]
        if kind == b"jxlp":
            return data[start + 4:]  # a partial codestream; the first holds the header
        if size == 0:
            break
        pos += size
    raise Undecodable("the JPEG XL original has no codestream")


def size(data: bytes) -> tuple[int, int]:
    """``(width, height)`` from the SizeHeader, before any decode."""
    try:
        stream = _codestream(data)
        if stream[:2] != b"\xff\x0a":
            raise Undecodable("the JPEG XL original has a bad signature")
        bits = _Bits(stream[2:16])
        if bits.read(1):  # small
            height = (bits.read(5) + 1) * 8
            ratio = bits.read(3)
            width = (bits.read(5) + 1) * 8 if ratio == 0 else 0
        else:
            height = bits.u32()
            ratio = bits.read(3)
            width = bits.u32() if ratio == 0 else 0
    except (IndexError, struct.error):
        raise Undecodable("the JPEG XL original is truncated") from None
    if ratio:
        num, den = _RATIOS[ratio]
        width = height * num // den
    return width, height


def probe(source: Source, limits: Limits) -> Header:
    width, height = size(source.read())
    if width * height > limits.max_source_pixels:
        raise TooLarge(f"source has {width * height} pixels; the limit is {limits.max_source_pixels}",
                       limit="max_source_pixels")
    return Header(loader="jxl", width=width, height=height, frames=1)


def decode(source: Source) -> pyvips.Image:
    import pillow_jxl  # noqa: F401  (registers the JXL plugin with Pillow)
    from pillow_jxl import JpegXLImagePlugin

    # One thread per render, like libvips (IMGPROXY_VIPS_CONCURRENCY): parallelism
    # comes from renders side by side, not from one decode taking every core.
    JpegXLImagePlugin.DECODE_THREADS = 0
    from PIL import Image, UnidentifiedImageError

    from .pillow import to_vips

    try:
        with Image.open(io.BytesIO(source.read()), formats=["JXL"]) as im:
            im.load()
            return to_vips(im)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, RuntimeError) as exc:
        raise Undecodable("the JPEG XL original cannot be decoded", internal=str(exc)[:120]) from None
