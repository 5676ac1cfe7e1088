"""Bench inputs: ~2 MP photos and a 22 MP JPEG, and cold names for them.

Every miss request must be a variant no server has seen, so each request gets
its own original *name*: a hard link to one of the photos. Hard links, not
symlinks, so an id check that refuses links out of the originals folder still
passes, and no bytes are copied.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from .paths import LARGE, TESTIMAGES

_PHOTO_GLOBS = ("exif/mei__*.jpg", "orientation/mei__*.jpg", "orientation/recurser__*.jpg",
                "exif/bimg__*.jpg", "exif/exifsamples__canon_hdr_YES.jpg")
PHOTO_SIZE = (1730, 1150)  # ~2 MP, as in the public imgproxy/thumbor comparison
_MIN_SIDE = 760  # smaller sources would be upscaled 2x+ and encode unrealistically fast


@dataclass(frozen=True)
class Inputs:
    root: Path  # the originals folder every server reads
    photos: list[Path]  # ~2 MP JPEGs inside root/src
    large: Path  # the 22 MP JPEG inside root/src


def prepare(root: Path, smoke: bool) -> Inputs:
    """Write the photos into ``root/src``; smoke mode makes tiny ones."""
    import pyvips

    src = root / "src"
    src.mkdir(parents=True, exist_ok=True)
    size = (173, 115) if smoke else PHOTO_SIZE
    sources = photo_sources()[: 3 if smoke else None]
    photos = []
    for i, path in enumerate(sources):
        out = src / f"photo{i:02d}.jpg"
        if not out.exists():
            make_photo(path, out, size)
        photos.append(out)
    large = src / "large.jpg"
    if not large.exists():
        if smoke:
            pyvips.Image.thumbnail(str(LARGE), 576).jpegsave(str(large), Q=90)
        else:
            link_or_copy(LARGE, large)
    return Inputs(root=root, photos=photos, large=large)


def make_photo(source: Path, out: Path, size: tuple[int, int] = PHOTO_SIZE) -> None:
    """``source`` cropped to ``size`` as a JPEG q90. thumbnail() applies EXIF orientation;
    crop="centre" gives every photo the same pixel count, so per-image times are comparable."""
    import pyvips

    image = pyvips.Image.thumbnail(str(source), size[0], height=size[1], size="both", crop="centre")
    image.jpegsave(str(out), Q=90, keep="none")


def photo_sources() -> list[Path]:
    import pyvips

    found = sorted({p for pattern in _PHOTO_GLOBS for p in TESTIMAGES.glob(pattern)})
    keep = []
    for path in found:
        image = pyvips.Image.new_from_file(str(path))
        if min(image.width, image.height) >= _MIN_SIDE:
            keep.append(path)
    if not keep:
        raise SystemExit(f"no source photos found under {TESTIMAGES}")
    return keep


def link_or_copy(source: Path, name: Path) -> None:
    """A hard link of ``source`` at ``name``; a copy when they are on different file systems."""
    try:
        os.link(source, name)
    except OSError:
        name.write_bytes(source.read_bytes())


def cold_files(folder: Path, sources: list[Path] | tuple[Path, ...], count: int) -> list[Path]:
    """``count`` fresh names in ``folder`` (``00000.jpg``, ...), each a hard link of the next of
    ``sources`` in turn, with its extension."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        source = sources[i % len(sources)]
        name = folder / f"{i:05d}{source.suffix.lower()}"
        if not name.exists():
            link_or_copy(source, name)
        out.append(name)
    return out


def cold_ids(inputs: Inputs, tag: str, count: int, large: bool = False) -> list[str]:
    """``count`` fresh original names under ``root/<tag>/``; returns their ids.

    An id is the path inside the originals folder without the extension.
    """
    files = cold_files(inputs.root / tag, [inputs.large] if large else inputs.photos, count)
    return [f"{tag}/{path.stem}" for path in files]
