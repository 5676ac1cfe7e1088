"""The one place that knows image formats: what we write and what we read.

Output formats are the ``<fmt>`` of a variant URL. Each is a frozen record;
URLs, presets, the planner, the encoder, the CLI and the stores all ask this
table, so adding a format is one entry here (plus its tests). Why each
encoder setting was chosen is in docs/RENDERING.md, "Encoders".

Input loaders are the libvips loaders an original may reach. Every other
loader is blocked at start-up (libvips' raw, matrix, CSV, FITS and the like
would otherwise be reachable by sniffing untrusted bytes). Some formats fall
back to a Python plugin where the libvips build lacks a decoder: HEVC-coded
HEIC goes through ``pi-heif``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True)
class OutputFormat:
    ext: str  # as in the URL, and the store key's extension
    mime: str
    quality: int  # default quality, where the preset names none
    alpha: bool  # keeps transparency; False means flatten onto white
    animates: bool  # may hold every frame of an animated original
    saver: str  # the pyvips Image method
    options: Mapping[str, object] = field(default_factory=dict)  # fixed saver options
    lossy: bool = True  # takes a quality (Q)


#: AVIF's scale is harsher than JPEG's: q55 AVIF looks about like q82 JPEG at
#: half the bytes. JPEG and AVIF are 4:2:0 at every quality (libvips' "auto"
#: turns JPEG subsampling off at q >= 90); a preset's ``chroma = "444"`` turns
#: it off. AVIF's effort here is the default of ``IMGPROXY_AVIF_EFFORT``. The
#: measurements behind each setting are in docs/RENDERING.md's encoder table.
OUTPUTS: Mapping[str, OutputFormat] = MappingProxyType({
    f.ext: f for f in (
        OutputFormat("webp", "image/webp", 80, alpha=True, animates=True,
                     saver="webpsave_buffer", options={"effort": 4}),
        OutputFormat("avif", "image/avif", 55, alpha=True, animates=False,
                     saver="heifsave_buffer", options={"compression": "av1", "effort": 2, "bitdepth": 8,
                                                        "subsample_mode": "on"}),
        OutputFormat("jpg", "image/jpeg", 82, alpha=False, animates=False,
                     saver="jpegsave_buffer", options={"optimize_coding": True, "interlace": True,
                                                        "subsample_mode": "on"}),
        OutputFormat("png", "image/png", 100, alpha=True, animates=False,
                     saver="pngsave_buffer", options={"compression": 6}, lossy=False),
        # GIF: 256 colours per frame, 1-bit alpha; for animations that must play everywhere.
        OutputFormat("gif", "image/gif", 100, alpha=True, animates=True,
                     saver="gifsave_buffer", options={"effort": 7}, lossy=False),
    )
})
FORMATS: tuple[str, ...] = tuple(OUTPUTS)

#: The pseudo-format of ``/v/<preset>/<id>.auto``: the web layer picks one of
#: ``AUTO_CHOICES`` by ``Accept`` before the variant key is made, so nothing
#: below it ever sees ``auto``.
AUTO = "auto"
AUTO_CHOICES = ("avif", "webp", "jpg", "png")


def mime_of(key: str) -> str:
    """The content type of a store key by its extension."""
    fmt = OUTPUTS.get(key.rpartition(".")[2])
    return fmt.mime if fmt is not None else "application/octet-stream"


#: Input formats, as decided by the original's bytes (:mod:`imgproxy.render.sniff`),
#: never by its name. ``IMGPROXY_INPUT_FORMATS`` allows a subset.
INPUT_FORMATS = ("jpeg", "png", "webp", "gif", "avif", "heic", "tiff", "svg", "jxl", "raw")


@dataclass(frozen=True)
class InputLoader:
    name: str  # the libvips class, for operation_block_set
    formats: tuple[str, ...]  # the sniffed input formats (INPUT_FORMATS) it reads
    nicknames: frozenset[str]  # what ``vips-loader`` says after a load
    animates: bool = False  # frames are kept when the output animates
    buffer_only: bool = False  # loaded from bytes, never a path (no base to resolve against)


INPUTS: tuple[InputLoader, ...] = (
    InputLoader("VipsForeignLoadJpeg", ("jpeg",), frozenset({"jpegload", "jpegload_buffer", "jpegload_source"})),
    InputLoader("VipsForeignLoadPng", ("png",), frozenset({"pngload", "pngload_buffer", "pngload_source"})),
    InputLoader("VipsForeignLoadWebp", ("webp",), frozenset({"webpload", "webpload_buffer", "webpload_source"}),
                animates=True),
    InputLoader("VipsForeignLoadNsgif", ("gif",), frozenset({"gifload", "gifload_buffer", "gifload_source"}),
                animates=True),
    InputLoader("VipsForeignLoadHeif", ("avif", "heic"), frozenset({"heifload", "heifload_buffer", "heifload_source"})),
    InputLoader("VipsForeignLoadTiff", ("tiff",), frozenset({"tiffload", "tiffload_buffer", "tiffload_source"})),
    InputLoader("VipsForeignLoadSvg", ("svg",), frozenset({"svgload", "svgload_buffer", "svgload_source"}),
                buffer_only=True),
)
#: Decoders outside libvips: loader name (``Header.loader``) -> the Python package.
#: HEVC HEIC (the header probe renames a HEIF whose compression is HEVC),
#: camera RAW, JPEG XL (the libvips wheel has no libjxl) and APNG (libvips
#: reads only an APNG's first frame) are decoded in :mod:`imgproxy.render.plugins`.
PLUGINS: Mapping[str, str] = MappingProxyType({
    "heif-hevc": "pi_heif", "raw": "rawpy", "jxl": "pillow_jxl", "apng": "PIL",
})

ANIMATED_LOADERS = frozenset(
    {n for loader in INPUTS if loader.animates for n in loader.nicknames} | {"apng"}
)
#: ``vips-loader`` nickname -> the input formats that loader may be sniffed as.
LOADER_FORMATS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {n: loader.formats for loader in INPUTS for n in loader.nicknames}
)
BUFFER_ONLY_LOADERS = frozenset(n for loader in INPUTS if loader.buffer_only for n in loader.nicknames)

#: Extensions an original may be stored under (``<id>.<ext>``), tried in this order.
ORIGINAL_EXTENSIONS = (
    "jpg", "jpeg", "png", "webp", "avif", "heic", "heif", "gif", "tif", "tiff", "svg", "svgz",
    "jxl", "dng", "cr2", "cr3", "nef", "arw", "raf", "rw2", "orf", "pef", "srw", "kdc", "jp2", "bmp",
)
