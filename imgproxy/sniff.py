"""What an upload is, from its first bytes: the magic numbers of the formats we read.

Ingest refuses anything else with 415 before a decoder sees it. The table is
the input side of :mod:`imgproxy.formats` (JPEG, PNG, WebP, GIF, HEIF/AVIF,
TIFF, SVG and SVGZ); each entry names the extension the original is stored
under, so the originals store resolves ``<id>.<ext>`` as for any other file.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Unsupported

#: Bytes of the head :func:`sniff` needs (an SVG may open with a long XML prolog).
HEAD = 1024


@dataclass(frozen=True)
class Sniffed:
    format: str  # our name: jpeg, png, webp, gif, heif, avif, tiff, svg
    ext: str  # the store key's extension
    mime: str


_JPEG = Sniffed("jpeg", "jpg", "image/jpeg")
_PNG = Sniffed("png", "png", "image/png")
_WEBP = Sniffed("webp", "webp", "image/webp")
_GIF = Sniffed("gif", "gif", "image/gif")
_AVIF = Sniffed("avif", "avif", "image/avif")
_HEIF = Sniffed("heif", "heic", "image/heic")
_TIFF = Sniffed("tiff", "tif", "image/tiff")
_SVG = Sniffed("svg", "svg", "image/svg+xml")
_SVGZ = Sniffed("svg", "svgz", "image/svg+xml")

#: ISO BMFF brands (``ftyp`` major or compatible) of the HEIF family.
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1"})


def sniff(head: bytes) -> Sniffed:
    """The format of a file starting with ``head``; 415 for anything we do not read."""
    if head[:3] == b"\xff\xd8\xff":
        return _JPEG
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return _PNG
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return _WEBP
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return _GIF
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return _TIFF
    if head[4:8] == b"ftyp":
        found = _bmff(head)
        if found is not None:
            return found
    if head[:2] == b"\x1f\x8b":
        return _SVGZ  # gzip: the header probe inflates it and insists on an SVG inside
    if _is_svg(head):
        return _SVG
    raise Unsupported("the upload is not in a format this server reads "
                      "(JPEG, PNG, WebP, GIF, AVIF, HEIC/HEIF, TIFF, SVG)")


def _bmff(head: bytes) -> Sniffed | None:
    size = int.from_bytes(head[:4], "big")
    box = head[8:min(max(size, 16), len(head))]
    brands = {box[i:i + 4] for i in range(0, len(box) - 3, 4)} - {b"\x00\x00\x00\x00"}
    if brands & _AVIF_BRANDS and head[8:12] != b"heic":
        return _AVIF
    if brands & _HEIF_BRANDS:
        return _HEIF
    return None


def _is_svg(head: bytes) -> bool:
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text[:1] != b"<":
        return False
    return b"<svg" in head or b"<!DOCTYPE svg" in head
