"""An original's metadata document: header facts, EXIF, ICC and placeholders.

Runs in a render worker like any job: the header is probed first (so the
pixel and frame limits apply before any decode), then one tiny, upright,
sRGB thumbnail (:data:`THUMB` px, shrink-on-load) feeds the BlurHash, the
ThumbHash, the LQIP data URI and the dominant colour. GPS is read only when
asked for, so with it off the location never leaves the worker.
"""

from __future__ import annotations

import base64
import os
from collections import Counter
from typing import Any

import pyvips

from ..formats import PLUGINS
from . import plugins
from .exif import read_exif
from .icc import description
from .jobs import MetaJob, Source
from .metadata import has
from .plan import Header
from .source import probe

THUMB = 32  # px, the longer side of the placeholder thumbnail
LQIP = 16  # px, the longer side of the LQIP image
_FORMATS = {"jpeg": "jpeg", "png": "png", "webp": "webp", "gif": "gif", "tiff": "tiff", "svg": "svg",
            "heif": "heif", "heif-hevc": "heic"}


def document(job: MetaJob) -> dict[str, Any]:
    header, source = probe(job.source, job.limits)
    image = _open(source)
    orientation = int(image.get("orientation")) if has(image, "orientation") else 1
    if not 1 <= orientation <= 8:
        orientation = 1
    width, height = header.upright  # one rule for the upright size (plan.Header), as uploads report it
    profile = image.get("icc-profile-data") if has(image, "icc-profile-data") else None
    exif = read_exif(image.get("exif-data") if has(image, "exif-data") else None, gps=job.gps)
    exif.pop("orientation", None)  # the document's orientation is the one still to apply
    gps = exif.pop("gps", None)
    doc: dict[str, Any] = {
        "format": _format(header.loader, image),
        "bytes": len(source.data) if source.data is not None else os.path.getsize(str(source.path)),
        "width": width,
        "height": height,
        "orientation": orientation,
        "frames": header.frames,
        "alpha": bool(image.hasalpha()),
        "color_space": str(image.interpretation),
        "icc_profile": description(profile) if profile else None,
        "exif": exif,
    }
    if job.gps:
        doc["gps"] = gps
    doc["placeholder"] = placeholders(_thumbnail(source, header))
    return doc


def _open(source: Source) -> pyvips.Image:
    if source.data is not None:
        return pyvips.Image.new_from_buffer(source.data, "", access="sequential")
    return pyvips.Image.new_from_file(source.path, access="sequential")


def _format(loader: str, image: pyvips.Image) -> str:
    name = loader.split("load")[0] if loader != "heif-hevc" else loader
    if name == "heif" and has(image, "heif-compression") and image.get("heif-compression") == "av1":
        return "avif"
    return _FORMATS.get(name, name)


def _thumbnail(source: Source, header: Header) -> pyvips.Image:
    """Upright, 8-bit sRGB (with alpha if any), at most :data:`THUMB` px a side, in memory."""
    options: dict[str, object] = {"height": THUMB, "size": "down"}
    if header.icc:
        options["output_profile"] = "srgb"
    if header.loader in PLUGINS:  # HEVC HEIC, RAW, JPEG XL, APNG: decoded outside libvips
        scale = THUMB / max(header.width, header.height, 1)
        image = plugins.decode(source, header, scale=scale).thumbnail_image(THUMB, **options)
    elif source.data is not None:
        image = pyvips.Image.thumbnail_buffer(source.data, THUMB, **options)
    else:
        image = pyvips.Image.thumbnail(source.path, THUMB, **options)
    if image.interpretation != "srgb":
        image = image.colourspace("srgb")
    if image.format != "uchar":
        image = image.cast("uchar")
    if image.bands == 2 or image.bands > 4:
        image = image[:3]
    if image.bands == 1:
        image = image.bandjoin([image, image])
    return image.copy_memory()


def placeholders(image: pyvips.Image) -> dict[str, str]:
    import blurhash

    from .thumbhash import encode as thumbhash

    w, h, bands = image.width, image.height, image.bands
    raw = image.write_to_memory()
    rgba = bytearray()
    for i in range(0, len(raw), bands):
        rgba += raw[i : i + 3] + (raw[i + 3 : i + 4] if bands == 4 else b"\xff")
    rows = [[list(rgba[(y * w + x) * 4 : (y * w + x) * 4 + 3]) for x in range(w)] for y in range(h)]
    x_components, y_components = (4, 3) if w >= h else (3, 4)
    lqip = image.thumbnail_image(LQIP, height=LQIP).webpsave_buffer(Q=40, strip=True, effort=4)
    return {
        "blurhash": blurhash.encode(rows, x_components, y_components),
        "thumbhash": base64.b64encode(thumbhash(w, h, rgba)).decode(),
        "lqip": "data:image/webp;base64," + base64.b64encode(lqip).decode(),
        "dominant_color": dominant(rgba),
    }


def dominant(rgba: bytes | bytearray) -> str:
    """The mean of the most common colour bin (4 bits a channel) among opaque pixels, as ``#rrggbb``."""
    pixels = [rgba[i : i + 3] for i in range(0, len(rgba), 4) if rgba[i + 3] >= 128] or [
        rgba[i : i + 3] for i in range(0, len(rgba), 4)
    ]
    if not pixels:
        return "#000000"
    bins = Counter((p[0] >> 4, p[1] >> 4, p[2] >> 4) for p in pixels)
    top = bins.most_common(1)[0][0]
    members = [p for p in pixels if (p[0] >> 4, p[1] >> 4, p[2] >> 4) == top]
    mean = [round(sum(p[c] for p in members) / len(members)) for c in range(3)]
    return "#" + "".join(f"{v:02x}" for v in mean)
