"""Camera RAW (DNG, CR2, CR3, NEF, ARW, RAF, RW2, ORF, KDC, ...) through LibRaw (``rawpy``).

Runs in the capped render workers like every other decoder. Two ways to pixels:

1. The largest embedded JPEG preview, when it is at least as large as the
   variant (most cameras embed a full-size one): a JPEG decode with
   shrink-on-load instead of a demosaic, about 100x cheaper.
2. Otherwise a demosaic with LibRaw's sensible defaults: camera white balance,
   sRGB primaries, 8 bits, and half size (no interpolation, 4x fewer pixels)
   when the variant needs no more than half the sensor.

Orientation: LibRaw's ``flip`` is applied to the demosaiced image by LibRaw;
a preview is rotated by the same flip unless it carries its own EXIF
orientation. Limits: the byte cap holds before LibRaw sees the file, the
pixel cap is checked on the sensor size LibRaw reads from the header. A file
whose raw data is stripped or truncated (fewer than a quarter bit per
sensor pixel: no real codec is that small) is refused rather than demosaiced
into noise, unless its preview is large enough.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import pyvips

from ..errors import TooLarge, Undecodable, Unsupported
from .jobs import Source
from .plan import Header, Limits

#: LibRaw flip -> the rotation that makes the image upright.
_ROTATE = {3: "rot180", 5: "rot270", 6: "rot90"}


@contextmanager
def _opened(source: Source) -> Iterator[object]:
    import rawpy

    try:
        raw = rawpy.imread(io.BytesIO(source.read()))
    except rawpy.LibRawFileUnsupportedError:
        raise Unsupported("the original is not a camera RAW this server can read") from None
    except (rawpy.LibRawError, OSError) as exc:
        raise Undecodable("the RAW original cannot be decoded", internal=_reason(exc)) from None
    try:
        with raw:
            yield raw
    except rawpy.LibRawError as exc:
        raise Undecodable("the RAW original is truncated or corrupt", internal=_reason(exc)) from None


def _reason(exc: BaseException) -> str:
    arg = exc.args[0] if exc.args else type(exc).__name__
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return text[:120]


def _size(source: Source) -> int:
    if source.data is not None:
        return len(source.data)
    import os

    assert source.path is not None
    return os.path.getsize(source.path)


def probe(source: Source, limits: Limits) -> Header:
    with _opened(source) as raw:
        sizes = raw.sizes  # type: ignore[attr-defined]
        sensor = sizes.raw_width * sizes.raw_height
        if sensor > limits.max_source_pixels:
            raise TooLarge(f"source has {sensor} pixels; the limit is {limits.max_source_pixels}",
                           limit="max_source_pixels")
        width, height = sizes.width, sizes.height
        if sizes.flip in (5, 6):
            width, height = height, width
    return Header(loader="raw", width=width, height=height, frames=1)


def decode(source: Source, need: int) -> pyvips.Image:
    """Upright sRGB pixels whose long side is at least ``need`` where the file allows."""
    import rawpy

    with _opened(source) as raw:
        sizes = raw.sizes  # type: ignore[attr-defined]
        stripped = _size(source) * 32 < sizes.raw_width * sizes.raw_height
        preview = _preview(raw, sizes.flip)
        if preview is not None and (max(preview.width, preview.height) >= need or stripped):
            if max(preview.width, preview.height) >= need:
                return preview
            raise Undecodable("the RAW original holds only a preview smaller than this variant")
        if stripped:
            raise Undecodable("the RAW original's image data is missing or truncated")
        half = need * 2 <= max(sizes.width, sizes.height)
        rgb = raw.postprocess(  # type: ignore[attr-defined]
            use_camera_wb=True, output_color=rawpy.ColorSpace.sRGB, output_bps=8, half_size=half,
        )
    height, width, bands = rgb.shape
    image = pyvips.Image.new_from_memory(rgb.tobytes(), width, height, bands, "uchar")
    return image.copy(interpretation="srgb")


def _preview(raw: object, flip: int) -> pyvips.Image | None:
    """The embedded JPEG preview, upright, or None when there is none."""
    import rawpy

    try:
        thumb = raw.extract_thumb()  # type: ignore[attr-defined]
    except (rawpy.LibRawError, rawpy.LibRawNoThumbnailError):
        return None
    if thumb.format != rawpy.ThumbFormat.JPEG:
        return None
    try:
        image = pyvips.Image.new_from_buffer(bytes(thumb.data), "")
        if image.get("vips-loader") != "jpegload_buffer":
            return None
        if image.get_typeof("orientation") and image.get("orientation") > 1:
            return image.autorot()
        rotate = _ROTATE.get(flip)
        return getattr(image, rotate)() if rotate else image
    except pyvips.Error:
        return None
