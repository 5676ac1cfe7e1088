"""A tiny DNG made here, so ``imgproxy doctor`` tries the RAW decoder instead of
only asking for its version: 32 x 32 (LibRaw refuses under 22 pixels a side),
uncompressed 16-bit RGGB, grey, about 2.4 KB."""

from __future__ import annotations

import struct

# TIFF field types: byte size and struct code of one value (RATIONALs are two numbers)
_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SRATIONAL = 1, 2, 3, 4, 5, 10
_SIZE = {_BYTE: 1, _ASCII: 1, _SHORT: 2, _LONG: 4, _RATIONAL: 8, _SRATIONAL: 8}
_CODE = {_BYTE: "B", _SHORT: "H", _LONG: "I", _RATIONAL: "II", _SRATIONAL: "ii"}
_STRIP_OFFSETS = 273


def probe_dng(width: int = 32, height: int = 32) -> bytes:
    pixels = struct.pack(f"<{width * height}H", *[1000] * (width * height))
    identity = [1, 1, 0, 1, 0, 1, 0, 1, 1, 1, 0, 1, 0, 1, 0, 1, 1, 1]
    entries: list[tuple[int, int, list[int] | bytes]] = [  # in tag order, as TIFF requires
        (254, _LONG, [0]), (256, _LONG, [width]), (257, _LONG, [height]), (258, _SHORT, [16]),
        (259, _SHORT, [1]), (262, _SHORT, [32803]), (_STRIP_OFFSETS, _LONG, [0]), (274, _SHORT, [1]),
        (277, _SHORT, [1]), (278, _LONG, [height]), (279, _LONG, [len(pixels)]),
        (33421, _SHORT, [2, 2]), (33422, _BYTE, [0, 1, 1, 2]),  # CFA: RGGB
        (50706, _BYTE, [1, 4, 0, 0]), (50708, _ASCII, b"imgproxy probe\0"), (50717, _LONG, [4095]),
        (50721, _SRATIONAL, identity), (50728, _RATIONAL, [1, 1, 1, 1, 1, 1]), (50778, _SHORT, [21]),
    ]
    data_at = 8 + 2 + 12 * len(entries) + 4  # values over 4 bytes follow the IFD, then the pixels
    values = [_pack(kind, v) for _, kind, v in entries]
    pixels_at = data_at + sum(len(v) + len(v) % 2 for v in values if len(v) > 4)
    values[[tag for tag, _, _ in entries].index(_STRIP_OFFSETS)] = struct.pack("<I", pixels_at)
    ifd, extra = b"", b""
    for (tag, kind, _), raw in zip(entries, values, strict=True):
        count = len(raw) // _SIZE[kind]
        if len(raw) <= 4:
            ifd += struct.pack("<HHI", tag, kind, count) + raw.ljust(4, b"\0")
        else:
            ifd += struct.pack("<HHII", tag, kind, count, data_at + len(extra))
            extra += raw + b"\0" * (len(raw) % 2)
    return b"II*\0" + struct.pack("<IH", 8, len(entries)) + ifd + b"\0" * 4 + extra + pixels


def _pack(kind: int, values: list[int] | bytes) -> bytes:
    if isinstance(values, bytes):
        return values
    code = _CODE[kind]
    return struct.pack("<" + code[0] * len(values), *values)
