"""A small, bounded EXIF reader: the few tags the metadata document shows.

The EXIF block is untrusted bytes, so nothing here raises on bad input: a
tag whose type, count or offset does not fit is skipped, strings are decoded
as UTF-8 with U+FFFD for bad bytes (Latin-1 if that fails wholesale), control
characters are dropped and every string is cut to :data:`MAX_STRING`. At most
:data:`MAX_ENTRIES` entries are read per IFD, and only IFD0 and the Exif and
GPS IFDs it points to are followed (no loops, no MakerNotes).

    read_exif(blob) -> {"make": "Canon", "exposure_time": "1/160", ...}
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

MAX_STRING = 128
MAX_ENTRIES = 512
_TYPE_SIZE = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 7: 1, 9: 4, 10: 8}

# IFD0
_MAKE, _MODEL, _ORIENTATION, _SOFTWARE, _DATETIME = 0x010F, 0x0110, 0x0112, 0x0131, 0x0132
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
# Exif IFD
_EXPOSURE, _FNUMBER, _ISO, _ORIGINAL, _DIGITIZED = 0x829A, 0x829D, 0x8827, 0x9003, 0x9004
_OFFSET, _OFFSET_ORIGINAL, _SUBSEC_ORIGINAL = 0x9010, 0x9011, 0x9291
_FOCAL, _FOCAL_35, _LENS_MAKE, _LENS_MODEL = 0x920A, 0xA405, 0xA433, 0xA434


class _Tiff:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.order = "<" if data[:2] == b"II" else ">"

    def unpack(self, fmt: str, offset: int) -> tuple[Any, ...]:
        return struct.unpack_from(self.order + fmt, self.data, offset)

    def ifd(self, offset: int) -> dict[int, tuple[int, int, bytes]]:
        """``tag -> (type, count, raw value bytes)`` of the IFD at ``offset``."""
        entries: dict[int, tuple[int, int, bytes]] = {}
        try:
            (count,) = self.unpack("H", offset)
        except struct.error:
            return entries
        for i in range(min(count, MAX_ENTRIES)):
            try:
                tag, kind, n, inline = self.unpack("HHI4s", offset + 2 + 12 * i)
                size = _TYPE_SIZE.get(kind, 0) * n
                if size == 0 or n > 1 << 16:
                    continue
                if size <= 4:
                    raw = inline[:size]
                else:
                    (at,) = self.unpack("I", offset + 2 + 12 * i + 8)
                    raw = self.data[at : at + size]
                    if len(raw) != size:
                        continue
            except struct.error:
                break
            entries.setdefault(tag, (kind, n, raw))
        return entries

    def numbers(self, entry: tuple[int, int, bytes] | None) -> list[float]:
        if entry is None:
            return []
        kind, n, raw = entry
        try:
            if kind in (5, 10):
                pairs = struct.unpack(self.order + ("II" if kind == 5 else "ii") * n, raw)
                return [a / b for a, b in zip(pairs[::2], pairs[1::2]) if b]
            code = {1: "B", 3: "H", 4: "I", 9: "i", 7: "B"}.get(kind)
            return list(struct.unpack(self.order + code * n, raw)) if code else []
        except struct.error:
            return []

    def rational(self, entry: tuple[int, int, bytes] | None) -> tuple[int, int] | None:
        if entry is None or entry[0] not in (5, 10):
            return None
        try:
            a, b = struct.unpack(self.order + ("II" if entry[0] == 5 else "ii"), entry[2][:8])
        except struct.error:
            return None
        return (a, b) if b else None


def clean(raw: bytes) -> str | None:
    """Untrusted bytes to a short printable string, or None if nothing is left."""
    raw = raw.split(b"\0", 1)[0][: MAX_STRING * 4]
    text = raw.decode("utf-8", "replace")
    if "\ufffd" in text:
        text = raw.decode("latin-1")
    text = "".join(c for c in text if c.isprintable()).strip()[:MAX_STRING]
    return text or None


def _string(entry: tuple[int, int, bytes] | None) -> str | None:
    return clean(entry[2]) if entry is not None and entry[0] in (1, 2, 7) else None


def _date(value: str | None, subsec: str | None, offset: str | None) -> str | None:
    """``2008:07:31 10:38:11`` (+ sub-seconds, + ``+02:00``) to ISO 8601."""
    if value is None or len(value) < 19:
        return None
    d, t = value[:10], value[11:19]
    if not (d[:4].isdigit() and d[5:7].isdigit() and d[8:10].isdigit() and t.replace(":", "").isdigit()):
        return None
    if d == "0000:00:00":
        return None
    iso = f"{d.replace(':', '-')}T{t}"
    if subsec and subsec.isdigit():
        iso += f".{subsec[:6]}"
    if offset and len(offset) == 6 and offset[0] in "+-" and offset[1:3].isdigit() and offset[4:6].isdigit():
        iso += offset
    return iso


def _exposure(value: tuple[int, int] | None) -> str | None:
    if value is None or value[0] <= 0:
        return None
    a, b = value
    if a >= b:
        return f"{a / b:g}"
    return f"1/{round(b / a)}" if b % a == 0 or b / a >= 3 else f"{a / b:.3g}"


def _coordinate(t: _Tiff, value: tuple[int, int, bytes] | None, ref: str | None, negative: str) -> float | None:
    parts = t.numbers(value)
    if len(parts) != 3 or not all(math.isfinite(p) for p in parts):
        return None
    degrees = parts[0] + parts[1] / 60 + parts[2] / 3600
    return round(-degrees if ref == negative else degrees, 7)


def read_exif(blob: bytes | None, gps: bool = False) -> dict[str, Any]:
    """The document's EXIF fields from an EXIF block (``Exif\\0\\0`` + TIFF); any missing field is absent."""
    if not blob:
        return {}
    data = blob[6:] if blob[:6] == b"Exif\0\0" else blob
    if data[:4] not in (b"II*\0", b"MM\0*"):
        return {}
    t = _Tiff(data)
    out: dict[str, Any] = {}
    try:
        ifd0 = t.ifd(t.unpack("I", 4)[0])
        exif_at = t.numbers(ifd0.get(_EXIF_IFD))
        exif = t.ifd(int(exif_at[0])) if exif_at else {}
        gps_at = t.numbers(ifd0.get(_GPS_IFD))
        gps_ifd = t.ifd(int(gps_at[0])) if gps and gps_at else {}
    except (struct.error, ValueError, OverflowError):
        return {}
    fields: dict[str, Callable[[], Any]] = {
        "make": lambda: _string(ifd0.get(_MAKE)),
        "model": lambda: _string(ifd0.get(_MODEL)),
        "lens": lambda: _lens(_string(exif.get(_LENS_MAKE)), _string(exif.get(_LENS_MODEL))),
        "date_taken": lambda: _date(_string(exif.get(_ORIGINAL)) or _string(exif.get(_DIGITIZED))
                                    or _string(ifd0.get(_DATETIME)),
                                    _string(exif.get(_SUBSEC_ORIGINAL)),
                                    _string(exif.get(_OFFSET_ORIGINAL)) or _string(exif.get(_OFFSET))),
        "exposure_time": lambda: _exposure(t.rational(exif.get(_EXPOSURE))),
        "f_number": lambda: _positive(t.numbers(exif.get(_FNUMBER)), 2),
        "iso": lambda: _integer(t.numbers(exif.get(_ISO))),
        "focal_length": lambda: _positive(t.numbers(exif.get(_FOCAL)), 2),
        "focal_length_35mm": lambda: _integer(t.numbers(exif.get(_FOCAL_35))),
        "software": lambda: _string(ifd0.get(_SOFTWARE)),
        "orientation": lambda: _integer(t.numbers(ifd0.get(_ORIENTATION))),
    }
    if gps:
        fields["gps"] = lambda: _gps(t, gps_ifd)
    for name, read in fields.items():
        try:
            value = read()
        except (struct.error, ValueError, OverflowError, ZeroDivisionError, IndexError):
            value = None  # one malformed field never costs the others
        if value is not None:
            out[name] = value
    return out


def _lens(make: str | None, model: str | None) -> str | None:
    if model and make and not model.lower().startswith(make.lower()):
        return f"{make} {model}"[:MAX_STRING]
    return model or None


def _positive(values: list[float], digits: int) -> float | None:
    return round(values[0], digits) if values and math.isfinite(values[0]) and values[0] > 0 else None


def _integer(values: list[float]) -> int | None:
    return int(values[0]) if values and math.isfinite(values[0]) and values[0] > 0 else None


def _gps(t: _Tiff, ifd: dict[int, tuple[int, int, bytes]]) -> dict[str, float] | None:
    lat = _coordinate(t, ifd.get(2), _string(ifd.get(1)), "S")
    lon = _coordinate(t, ifd.get(4), _string(ifd.get(3)), "W")
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    out = {"latitude": lat, "longitude": lon}
    altitude = t.numbers(ifd.get(6))
    if altitude and math.isfinite(altitude[0]):
        below = t.numbers(ifd.get(5))
        out["altitude"] = round(-altitude[0] if below and below[0] == 1 else altitude[0], 2)
    return out
