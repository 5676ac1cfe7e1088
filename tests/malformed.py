"""Real image files carrying metadata of any bytes, for the property tests.

Containers are written by hand (PNG chunks, JPEG segments, WebP RIFF chunks),
so the metadata reaches the decoder exactly as given, however broken.
"""

from __future__ import annotations

import struct
import zlib

import pyvips


def _pixels(alpha: bool = False) -> pyvips.Image:
    image = (pyvips.Image.xyz(16, 12)[0] * 16).cast("uchar")
    image = image.bandjoin([image, image]).copy(interpretation="srgb")
    return image.bandjoin(255) if alpha else image


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(text_key: bytes = b"Comment", text: bytes = b"", itxt: bytes = b"", exif: bytes = b"",
        icc: bytes = b"") -> bytes:
    """A PNG whose ``tEXt``, ``iTXt``, ``eXIf`` and ``iCCP`` chunks hold the bytes given."""
    base = _pixels().pngsave_buffer(keep="none")
    chunks = b""
    if icc:
        chunks += _png_chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(icc))
    if text or text_key != b"Comment":
        chunks += _png_chunk(b"tEXt", text_key[:79] + b"\x00" + text)
    if itxt:
        chunks += _png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + itxt)
    if exif:
        chunks += _png_chunk(b"eXIf", exif)
    return base[:33] + chunks + base[33:]  # after the signature and IHDR


def _jpeg_segment(marker: int, data: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(data) + 2) + data


def jpeg(exif: bytes = b"", xmp: bytes = b"", icc: bytes = b"", comment: bytes = b"") -> bytes:
    """A JPEG with APP1 Exif/XMP, APP2 ICC and COM segments holding the bytes given."""
    base = _pixels().jpegsave_buffer(keep="none")
    segments = b""
    if exif:
        segments += _jpeg_segment(0xE1, b"Exif\x00\x00" + exif[:65000])
    if xmp:
        segments += _jpeg_segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + xmp[:65000])
    if icc:
        segments += _jpeg_segment(0xE2, b"ICC_PROFILE\x00\x01\x01" + icc[:65000])
    if comment:
        segments += _jpeg_segment(0xFE, comment[:65000])
    return base[:2] + segments + base[2:]  # right after SOI


def _riff_chunk(kind: bytes, data: bytes) -> bytes:
    return kind + struct.pack("<I", len(data)) + data + (b"\x00" if len(data) % 2 else b"")


def webp(exif: bytes = b"", xmp: bytes = b"", icc: bytes = b"") -> bytes:
    """An extended (VP8X) WebP with ICCP, EXIF and XMP chunks holding the bytes given."""
    image = _pixels()
    simple = image.webpsave_buffer(keep="none", lossless=True)
    bitstream = simple[12:]  # the VP8L chunk of a simple file
    flags = (0x20 if icc else 0) | (0x08 if exif else 0) | (0x04 if xmp else 0)
    size = struct.pack("<I", image.width - 1)[:3] + struct.pack("<I", image.height - 1)[:3]
    body = _riff_chunk(b"VP8X", bytes([flags, 0, 0, 0]) + size)
    if icc:
        body += _riff_chunk(b"ICCP", icc)
    body += bitstream
    if exif:
        body += _riff_chunk(b"EXIF", exif)
    if xmp:
        body += _riff_chunk(b"XMP ", xmp)
    return b"RIFF" + struct.pack("<I", 4 + len(body)) + b"WEBP" + body


def tiff_exif(entries: list[tuple[int, int, bytes]]) -> bytes:
    """A little-endian TIFF/EXIF block with one IFD of ``(tag, type, raw value)`` entries."""
    count = len(entries)
    data_at = 8 + 2 + 12 * count + 4
    ifd, data = b"", b""
    for tag, kind, value in entries:
        size = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1}.get(kind, 1)
        n = max(1, len(value) // size)
        if len(value) <= 4:
            ifd += struct.pack("<HHI", tag, kind, n) + value.ljust(4, b"\x00")
        else:
            ifd += struct.pack("<HHII", tag, kind, n, data_at + len(data))
            data += value
    return b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", count) + ifd + b"\x00" * 4 + data
