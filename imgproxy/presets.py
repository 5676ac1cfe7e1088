"""Named presets: what a variant looks like, validated once at start-up.

A preset's *digest* goes into every variant key, so editing a preset can never
serve renders made from its old definition. It hashes only what shapes the
output, and is stable as the preset format grows:

- the first fields (``width``, ``height``, ``fit``, ``enlarge``, ``strip``)
  and the quality of the first four formats (``webp``, ``avif``, ``jpg``,
  ``png``, defaults filled in) are always hashed, as they were from the start;
- every later field, and the quality of a later format, is hashed only when
  it differs from its default.

So adding a field with a default, or a new output format, changes no digest
and re-renders nothing; ``tests/test_presets.py`` pins digests to prove it.

Fields that came later: ``chroma`` (``"420"``, the default, or ``"444"`` for
graphics and text whose colour edges matter; JPEG and AVIF) and
``auto_target``, the luma SSIM an ``"auto"`` quality must reach (filled in with
:data:`DEFAULT_AUTO_TARGET` when a quality is ``"auto"``, so the target in
force is always hashed). Encoder speed (AVIF effort) is a server setting, not
part of a preset: see the encoder table in docs/RENDERING.md.
``widths`` (the ladder a URL may pick from) is never hashed: it changes no
render, and each width's variant key names the width itself. A watermark is
hashed by its placement and its image's content (``sha256``), not its name.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .formats import FORMATS, OUTPUTS

#: Quality used for a format the preset does not mention.
DEFAULT_QUALITY = MappingProxyType({f.ext: f.quality for f in OUTPUTS.values()})
#: The luma SSIM an ``"auto"`` quality must reach when the preset names none.
DEFAULT_AUTO_TARGET = 0.96
AUTO = "auto"
CHROMA = ("420", "444")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
#: Not preset names: a metadata URL's signature (``meta/<id>``) must never sign a variant.
RESERVED = frozenset({"meta"})
_MAX_SIDE = 16384
#: Hashed whatever their value: the definition of a digest before any field was added.
_ALWAYS_HASHED = ("width", "height", "fit", "enlarge", "strip")
_FIRST_FORMATS = ("webp", "avif", "jpg", "png")
_NOT_HASHED = ("name", "digest", "quality", "widths")
FITS = ("inside", "cover", "contain", "fill")
#: Compass points as a focal point (fractions of the width and height).
POSITIONS = MappingProxyType({
    "centre": (0.5, 0.5), "north": (0.5, 0.0), "south": (0.5, 1.0), "east": (1.0, 0.5),
    "west": (0.0, 0.5), "north-east": (1.0, 0.0), "north-west": (0.0, 0.0),
    "south-east": (1.0, 1.0), "south-west": (0.0, 1.0),
})
#: ``centre`` and the compass points, and libvips' smartcrop strategies.
GRAVITIES = (*POSITIONS, "attention", "entropy")
_COLOUR = re.compile(r"^#[0-9a-f]{6}([0-9a-f]{2})?$")


class PresetError(ValueError):
    """A preset definition is invalid; the message names the preset."""


@dataclass(frozen=True)
class Watermark:
    """An image laid over every variant of a preset, after resizing.

    ``image`` is ``file:<path>`` (relative to the presets file) or an id in the
    originals store; start-up resolves it to a local ``path`` and its ``sha256``.
    """

    image: str
    position: str = "south-east"
    margin: int = 16  # output pixels from the edges
    opacity: float = 0.6
    scale: float = 0.2  # the mark's longer side, as a fraction of the output's shorter side
    path: str = ""
    sha256: str = ""

    def check(self, preset: str) -> None:
        where = f"preset {preset!r}: watermark"
        if not isinstance(self.image, str) or not self.image:
            raise PresetError(f"{where}.image must be 'file:<path>' or an original's id")
        if self.position not in POSITIONS:
            raise PresetError(f"{where}.position must be one of {', '.join(POSITIONS)}")
        if not isinstance(self.margin, int) or isinstance(self.margin, bool) or not 0 <= self.margin <= 1000:
            raise PresetError(f"{where}.margin must be an integer 0..1000")
        for name in ("opacity", "scale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 < value <= 1:
                raise PresetError(f"{where}.{name} must be a number in (0, 1]")

    @property
    def hashed(self) -> dict[str, Any]:
        return {"position": self.position, "margin": self.margin, "opacity": float(self.opacity),
                "scale": float(self.scale), "sha256": self.sha256}


@dataclass(frozen=True)
class Preset:
    name: str
    width: int
    height: int
    fit: str = "inside"  # "inside", "cover" (crop by gravity), "contain" (letterbox), "fill" (stretch)
    enlarge: bool = False
    strip: bool = True
    # A plain dict (mapping proxies do not pickle to worker processes); never mutated.
    quality: Mapping[str, int | str] = field(default_factory=dict)  # a number, or "auto"
    chroma: str = "420"  # chroma subsampling of JPEG and AVIF: "420" or "444"
    auto_target: float | None = None  # luma SSIM for "auto" qualities; set when one is "auto"
    gravity: str = "centre"  # where fit = "cover" crops: a compass point, attention, entropy
    background: str = "#ffffff"  # fit = "contain": the letterbox colour, #rrggbb or #rrggbbaa
    widths: tuple[int, ...] = ()  # the widths a URL may ask for (@w<width>)
    watermark: Watermark | None = None

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise PresetError(f"preset name {self.name!r}: use a-z, 0-9, '-', '_'")
        if self.name in RESERVED:
            raise PresetError(f"preset name {self.name!r} is reserved")
        for side in ("width", "height"):
            value = getattr(self, side)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= _MAX_SIDE:
                raise PresetError(f"preset {self.name!r}: {side} must be an integer 1..{_MAX_SIDE}")
        if self.fit not in FITS:
            raise PresetError(f"preset {self.name!r}: fit must be one of {', '.join(FITS)}")
        self._check_art()
        for flag in ("enlarge", "strip"):
            if not isinstance(getattr(self, flag), bool):
                raise PresetError(f"preset {self.name!r}: {flag} must be true or false")
        unknown = set(self.quality) - set(FORMATS)
        if unknown:
            raise PresetError(f"preset {self.name!r}: quality for unknown format {sorted(unknown)}")
        for fmt, q in self.quality.items():
            if q == AUTO and OUTPUTS[fmt].lossy:
                continue
            if not isinstance(q, int) or isinstance(q, bool) or not 1 <= q <= 100:
                raise PresetError(f"preset {self.name!r}: quality.{fmt} must be 1..100"
                                  + (" or 'auto'" if OUTPUTS[fmt].lossy else ""))
        if self.chroma not in CHROMA:
            raise PresetError(f"preset {self.name!r}: chroma must be '420' or '444'")
        merged = {**DEFAULT_QUALITY, **self.quality}
        object.__setattr__(self, "quality", merged)
        target = self.auto_target
        if target is not None and (isinstance(target, bool) or not isinstance(target, int | float)
                                   or not 0.5 <= target < 1):
            raise PresetError(f"preset {self.name!r}: auto_target must be a number in 0.5..0.999")
        if AUTO in merged.values():
            object.__setattr__(self, "auto_target", float(target or DEFAULT_AUTO_TARGET))
        elif target is not None:
            raise PresetError(f"preset {self.name!r}: auto_target needs a quality set to 'auto'")
        object.__setattr__(self, "digest", _digest(self))

    digest: str = field(init=False, default="", compare=False)

    def _check_art(self) -> None:
        where = f"preset {self.name!r}"
        if self.gravity not in GRAVITIES:
            raise PresetError(f"{where}: gravity must be one of {', '.join(GRAVITIES)}")
        if self.gravity != "centre" and self.fit != "cover":
            raise PresetError(f"{where}: gravity needs fit = 'cover'")
        if not isinstance(self.background, str) or not _COLOUR.fullmatch(self.background):
            raise PresetError(f"{where}: background must be '#rrggbb' or '#rrggbbaa' (lower case)")
        if self.background != "#ffffff" and self.fit != "contain":
            raise PresetError(f"{where}: background needs fit = 'contain'")
        widths = self.widths
        if (not isinstance(widths, (list, tuple))
                or not all(isinstance(w, int) and not isinstance(w, bool) for w in widths)
                or list(widths) != sorted(set(widths))
                or (widths and not 1 <= widths[0] <= widths[-1] <= self.width)):
            raise PresetError(f"{where}: widths must be increasing integers 1..{self.width} (the width)")
        object.__setattr__(self, "widths", tuple(widths))
        if self.watermark is not None:
            if not isinstance(self.watermark, Watermark):
                raise PresetError(f"{where}: watermark must be a table")
            self.watermark.check(self.name)

    def at_width(self, width: int) -> Preset:
        """The preset a ladder width renders with: ``width`` wide; the box's
        aspect ratio kept when it crops, pads or stretches, and the image's
        own when it fits inside."""
        height = _MAX_SIDE if self.fit == "inside" else max(1, round(self.height * width / self.width))
        return replace(self, width=width, height=height, widths=())

    def with_watermark_file(self, path: str | Path) -> Preset:
        """This preset with its watermark read from ``path``: a start-up step."""
        assert self.watermark is not None
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise PresetError(f"preset {self.name!r}: watermark {path}: {exc.strerror}") from exc
        mark = replace(self.watermark, path=str(Path(path).resolve()),
                       sha256=hashlib.sha256(data).hexdigest())
        return replace(self, watermark=mark)


def _digest(preset: Preset) -> str:
    definition: dict[str, Any] = {}
    for f in fields(preset):
        if f.name in _NOT_HASHED:
            continue
        value = getattr(preset, f.name)
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if f.name in _ALWAYS_HASHED or value != default:
            definition[f.name] = value.hashed if isinstance(value, Watermark) else value
    definition["quality"] = {
        fmt: q for fmt, q in sorted(preset.quality.items())
        if fmt in _FIRST_FORMATS or q != DEFAULT_QUALITY[fmt]
    }
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def parse_presets(doc: Mapping[str, object], base: str | Path = ".") -> dict[str, Preset]:
    """Presets from a parsed TOML document; ``file:`` watermarks are read
    relative to ``base`` (the presets file's folder)."""
    presets: dict[str, Preset] = {}
    for name, body in doc.items():
        if not isinstance(body, dict):
            raise PresetError(f"preset {name!r}: expected a table")
        known = {"width", "height", "fit", "enlarge", "strip", "quality", "chroma", "auto_target",
                 "gravity", "background", "widths", "watermark"}
        extra = set(body) - known
        if extra:
            raise PresetError(f"preset {name!r}: unknown keys {sorted(extra)}")
        if "width" not in body or "height" not in body:
            raise PresetError(f"preset {name!r}: width and height are required")
        options = dict(body)
        quality = options.pop("quality", {})
        if isinstance(quality, int) and not isinstance(quality, bool):
            # One number sets every lossy format; AVIF keeps its own scale.
            quality = {"webp": quality, "jpg": quality}
        elif quality == AUTO:
            # "auto" is measured on one scale (SSIM), so it sets AVIF too.
            quality = {f.ext: AUTO for f in OUTPUTS.values() if f.lossy}
        if not isinstance(quality, dict):
            raise PresetError(f"preset {name!r}: quality must be a number or a table")
        mark = options.pop("watermark", None)
        if mark is not None:
            options["watermark"] = _watermark(name, mark)
        preset = Preset(name=name, quality=quality, **options)
        if preset.watermark is not None and preset.watermark.image.startswith("file:"):
            preset = preset.with_watermark_file(Path(base) / preset.watermark.image.removeprefix("file:"))
        presets[name] = preset
    if not presets:
        raise PresetError("no presets defined")
    return presets


def load_presets(path: str | Path) -> dict[str, Preset]:
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise PresetError(f"cannot read presets file {path}: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise PresetError(f"presets file {path}: {exc}") from exc
    return parse_presets(doc, Path(path).parent)


def _watermark(preset: str, table: object) -> Watermark:
    known = {"image", "position", "margin", "opacity", "scale"}
    if not isinstance(table, dict) or "image" not in table or set(table) - known:
        raise PresetError(f"preset {preset!r}: watermark must be a table of {', '.join(sorted(known))}"
                          " with an image")
    return Watermark(**table)
