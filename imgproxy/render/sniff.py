"""Which format an original is in, decided by its first bytes, never its name.

A PNG stored as ``photo.jpg`` is a PNG; an SVG stored as ``x.webp`` is an
SVG and meets every SVG rule; a text file named ``.png`` is nothing we read
(415). The answer is one of :data:`imgproxy.formats.INPUT_FORMATS`, checked
against the allowed list before any decoder sees the bytes.

Camera RAW mostly hides in TIFF containers (DNG, NEF, CR2, ARW, KDC, ...).
A TIFF is RAW when it says so: a DNGVersion tag, Canon's ``CR`` marker, a
CFA or LinearRaw photometric, or an IFD0 that is only a reduced-resolution
preview with the real image in SubIFDs (how NEF, DNG and KDC are laid out).
"""

from __future__ import annotations

import struct

#: Bytes read for sniffing: enough for a TIFF's first IFD in every camera file we know.
HEAD = 64 * 1024

_HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_RAW_MAGIC = (
    b"FUJIFILMCCD-RAW",  # RAF
    b"IIU\x00",  # Panasonic RW2
    b"IIRO", b"IIRS", b"MMOR",  # Olympus ORF
    b"\x00MRM",  # Minolta MRW
    b"FOVb",  # Sigma X3F
)
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*")


def sniff(head: bytes) -> str | None:
    """The input format of bytes starting with ``head``; None if we read no such thing."""
    if head[:3] == b"\xff\xd8\xff":
        return "jpeg"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if head[4:8] == b"ftyp":
        return _isobmff(head)
    if head[:2] == b"\xff\x0a" or head[:12] == b"\x00\x00\x00\x0cJXL \r\n\x87\n":
        return "jxl"
    if head.startswith(_RAW_MAGIC):
        return "raw"
    if head[:4] in _TIFF_MAGIC:
        return "raw" if _tiff_is_raw(head) else "tiff"
    if head[:2] == b"\x1f\x8b" or head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
        return "svg"  # SVGZ or XML: the SVG guard and librsvg decide the rest
    return None


def is_apng(head: bytes) -> bool:
    """A PNG whose animation control chunk comes before its first IDAT."""
    return head[:8] == b"\x89PNG\r\n\x1a\n" and b"acTL" in head[:head.find(b"IDAT") if b"IDAT" in head else None]


def _isobmff(head: bytes) -> str | None:
    (size,) = struct.unpack_from(">I", head, 0)
    major = head[8:12]
    compatible = {head[i:i + 4] for i in range(16, min(size, len(head), 256), 4)}
    if major == b"crx " or b"crx " in compatible:
        return "raw"  # Canon CR3
    if major in _AVIF_BRANDS:
        return "avif"
    if major in _HEIC_BRANDS:
        return "heic"
    if compatible & _AVIF_BRANDS:
        return "avif"
    if compatible & _HEIC_BRANDS or major in (b"mif1", b"msf1"):
        return "heic"
    return None


def _tiff_is_raw(head: bytes) -> bool:
    if head[8:10] == b"CR":
        return True  # Canon CR2
    order = "<" if head[:2] == b"II" else ">"
    try:
        (offset,) = struct.unpack_from(order + "I", head, 4)
        (count,) = struct.unpack_from(order + "H", head, offset)
        tags: dict[int, int] = {}
        for i in range(min(count, 512)):
            tag, kind, _, value = struct.unpack_from(order + "HHI4s", head, offset + 2 + 12 * i)
            if kind in (3, 4):
                tags[tag] = struct.unpack_from(order + ("H" if kind == 3 else "I"), value)[0]
            else:
                tags[tag] = -1
    except struct.error:
        return False  # IFD0 beyond the head, or a broken one: let libtiff judge it
    return (
        50706 in tags  # DNGVersion
        or tags.get(262) in (32803, 34892)  # CFA, LinearRaw
        or (tags.get(254) == 1 and 330 in tags)  # a preview, the image in SubIFDs
    )
