"""Open a source and read its header without decoding pixels.

Third-party decoder errors are mapped here, where they enter:
unknown formats become 415, anything else the decoder says becomes 422.
"""

from __future__ import annotations

import io
import os
import zlib
from dataclasses import replace

import pyvips

from ..errors import ImgproxyError, TooLarge, Undecodable, Unsupported
from ..formats import BUFFER_ONLY_LOADERS, LOADER_FORMATS
from .icc import needs_transform
from .jobs import Source
from .metadata import has
from .plan import Header, Limits
from .sniff import HEAD, is_apng, sniff
from .svgcost import check_svg_cost


def map_vips_error(exc: pyvips.Error) -> ImgproxyError:
    message = f"{exc.message} {exc.detail or ''}"
    if "not a known" in message or "is not in a known format" in message:
        return Unsupported("the original is in a format this server cannot read")
    if "out of order read" in message or "premature end" in message.lower():
        return Undecodable("the original is truncated")
    return Undecodable("the original cannot be decoded", internal=_first_line(exc.detail or exc.message))


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[0][:200] if lines else "decode error"


def probe(source: Source, limits: Limits) -> tuple[Header, Source]:
    """Read the header; returns it and the source as it should be loaded.

    The format is decided by the bytes (:mod:`.sniff`) and checked against the
    allowed inputs before any decoder sees them; then 413 for sources over
    the byte, pixel or frame limits, before any decode.
    """
    head = source.data[:HEAD] if source.data is not None else _head(source.path, HEAD)
    fmt = sniff(head)
    if fmt is None:
        raise Unsupported("the original is not in a format this server reads")
    if limits.input_formats and fmt not in limits.input_formats:
        raise Unsupported(f"{fmt} originals are not accepted by this server", format=fmt)
    size = len(source.data) if source.data is not None else os.path.getsize(source.path or "")
    if size > limits.max_source_bytes:
        raise TooLarge(f"the original has {size} bytes; the limit is {limits.max_source_bytes}",
                       limit="max_source_bytes")
    if fmt == "svg":
        source = _guard_svg(source, limits)
    if fmt == "raw":
        from . import raw

        header = raw.probe(source, limits)
    elif fmt == "jxl":
        from . import jxl

        header = jxl.probe(source, limits)
    elif is_apng(head):
        from .pillow import probe_apng

        header = probe_apng(source)
    else:
        header, source = _probe_vips(source, fmt)
    if header.width * header.height > limits.max_source_pixels:
        raise TooLarge(
            f"source has {header.width * header.height} pixels; "
            f"the limit is {limits.max_source_pixels}",
            limit="max_source_pixels",
        )
    return header, source


def _probe_vips(source: Source, fmt: str) -> tuple[Header, Source]:
    try:
        image = _open(source)
        loader = image.get("vips-loader")
    except pyvips.Error as exc:
        raise map_vips_error(exc) from None
    if fmt not in LOADER_FORMATS.get(loader, ()):
        # libvips sniffs again; it must agree with us, or no loader is trusted.
        raise Unsupported(f"the original looks like {fmt} but does not load as one")
    # An SVG loaded from a file may pull in files beside it; from memory it
    # has no base to resolve anything against.
    if loader in BUFFER_ONLY_LOADERS and source.data is None:
        source = Source(data=source.read())
    frames = image.get("n-pages") if has(image, "n-pages") else 1
    height = image.height
    if has(image, "page-height") and frames > 1:
        height = image.get("page-height")
    profile = image.get("icc-profile-data") if has(image, "icc-profile-data") else None
    orientation = image.get("orientation") if has(image, "orientation") else 1
    header = Header(loader=loader, width=image.width, height=height, frames=max(1, frames),
                    icc=needs_transform(profile), alpha=bool(image.hasalpha()),
                    swapped=orientation in (5, 6, 7, 8))
    if has(image, "heif-compression") and image.get("heif-compression") == "hevc":
        header = replace(header, loader="heif-hevc")
    return header, source


def _guard_svg(source: Source, limits: Limits) -> Source:
    """Count an SVG's elements before librsvg sees it.

    librsvg must parse a whole document even for its header, and a document
    of millions of elements costs gigabytes, so the element count (every
    ``<`` not closing a tag) is checked first. SVGZ is inflated here, capped
    at ``max_source_bytes``, and handed on as plain bytes. Binary formats
    never start with ``<`` or gzip's magic, so they only cost a 64-byte read.
    """
    head = source.data[:64] if source.data is not None else _head(source.path, 64)
    if head[:2] == b"\x1f\x8b":
        data = _gunzip(source.read(), limits.max_source_bytes)
        if not _looks_like_xml(data[:64]):
            raise Unsupported("a gzip-compressed original must be an SVG")
    elif _looks_like_xml(head):
        data = source.read()
    else:
        return source
    elements = data.count(b"<") - data.count(b"</")
    if elements > limits.max_svg_elements:
        raise TooLarge(f"the SVG has about {elements} elements; the limit is {limits.max_svg_elements}",
                       limit="max_svg_elements")
    check_svg_cost(data, limits.max_svg_elements)  # entities, references, filters, nesting
    return Source(data=data)


def _looks_like_xml(head: bytes) -> bool:
    return head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<"


def _head(path: str | None, n: int) -> bytes:
    assert path is not None
    with open(path, "rb") as f:
        return f.read(n)


def _gunzip(data: bytes, limit: int) -> bytes:
    inflater = zlib.decompressobj(wbits=31)
    try:
        out = inflater.decompress(data, limit + 1)
    except zlib.error:
        raise Undecodable("the gzip-compressed original is corrupt") from None
    if len(out) > limit:
        raise TooLarge(f"the SVGZ inflates past {limit} bytes", limit="max_source_bytes")
    return out


def _open(source: Source) -> pyvips.Image:
    if source.data is not None:
        return pyvips.Image.new_from_buffer(source.data, "", access="sequential")
    return pyvips.Image.new_from_file(source.path, access="sequential")


def decode_hevc(source: Source) -> pyvips.Image:
    """HEVC-coded HEIC through pi-heif: the libvips wheel carries no HEVC decoder.

    libheif applies the container's rotation and mirroring (irot/imir), which is
    where HEIF keeps orientation, so no EXIF rotation is applied after this.
    """
    try:
        import pi_heif
    except ImportError:  # pragma: no cover - pi-heif is a dependency
        raise Unsupported("HEIC (HEVC) decoding is not available on this server") from None
    try:
        heif = pi_heif.open_heif(io.BytesIO(source.read()), convert_hdr_to_8bit=True)
        primary = heif[heif.primary_index]
        mode = primary.mode
        data = bytes(primary.data)
        width, height = primary.size
        stride = primary.stride
        icc = primary.info.get("icc_profile")
    except (ValueError, RuntimeError, OSError) as exc:
        raise Undecodable("the HEIC original cannot be decoded", internal=str(exc)[:200]) from None
    bands = {"RGB": 3, "RGBA": 4, "L": 1, "LA": 2}.get(mode.split(";")[0])
    if bands is None:
        raise Unsupported(f"HEIC pixel mode {mode} is not supported")
    row = width * bands
    if stride != row:
        data = b"".join(data[y * stride : y * stride + row] for y in range(height))
    image = pyvips.Image.new_from_memory(data, width, height, bands, "uchar")
    image = image.copy(interpretation="b-w" if bands <= 2 else "srgb")
    if icc:
        image = image.copy()
        image.set_type(pyvips.GValue.blob_type, "icc-profile-data", bytes(icc))
    return image
