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
``public`` (unsigned URLs allowed) is never hashed either: it changes who
may ask, not what is rendered.
``widths`` (the ladder a URL may pick from) is never hashed: it changes no
render, and each width's variant key names the width itself. A watermark is
hashed by its placement and its image's content (``sha256``), not its name.
The operations (``trim``, ``rotate``, ``flip``, ``flop``, ``blur``,
``sharpen``, ``grayscale``, ``pad``) are off by default and hashed only when
set; ``sharpen = true`` is stored as its sigma, so it hashes as
``sharpen = 1.0`` does (``trim = true`` as ``trim = 10``).
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
#: ``public`` changes who may ask for a variant, not what is rendered: never hashed,
#: so marking a preset public changes no digest and re-renders nothing.
_NOT_HASHED = ("name", "digest", "quality", "widths", "public")
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
#: Clockwise, after EXIF orientation.
ROTATIONS = (0, 90, 180, 270)
#: ``sharpen = true``: a mild unsharp mask for downscaled photos (libvips' own
#: default sigma, 0.5, leaves a one-pixel mask that changes nothing).
DEFAULT_SHARPEN = 1.0
#: ``trim = true``: how far (0..255) a pixel may differ from the border colour and still be cut.
DEFAULT_TRIM = 10.0
_BLUR = (0.3, 100.0)
_SHARPEN = (0.6, 10.0)
_MAX_PAD = 1000


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
    background: str = "#ffffff"  # the letterbox (fit = "contain") and pad colour, #rrggbb or #rrggbbaa
    widths: tuple[int, ...] = ()  # the widths a URL may ask for (@w<width>)
    watermark: Watermark | None = None
    # Operations, each off by default (docs/URLS.md lists them in the order they run).
    trim: float | None = None  # cut uniform borders: the threshold 0..255 (true: DEFAULT_TRIM)
    rotate: int = 0  # 90, 180 or 270 degrees clockwise, after EXIF orientation
    flip: bool = False  # upside down (top <-> bottom)
    flop: bool = False  # mirrored (left <-> right)
    blur: float = 0.0  # Gaussian sigma in output pixels, 0.3..100
    sharpen: float = 0.0  # libvips sharpen's sigma, 0.6..10 (true: DEFAULT_SHARPEN)
    grayscale: bool = False
    pad: int = 0  # a margin of output pixels in ``background`` around the fitted image
    # Unsigned URLs allowed (ladder widths and formats only; docs/URLS.md#public-presets). Not hashed.
    public: bool = False

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
        for flag in ("enlarge", "strip", "public"):
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
        self._check_operations()
        if self.background != "#ffffff" and self.fit != "contain" and not self.pad:
            raise PresetError(f"{where}: background needs fit = 'contain' or a pad")
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

    def _check_operations(self) -> None:
        where = f"preset {self.name!r}"

        def number(value: object) -> bool:
            return isinstance(value, int | float) and not isinstance(value, bool)

        trim = DEFAULT_TRIM if self.trim is True else None if self.trim is False else self.trim
        if trim is not None and not (number(trim) and 0 <= trim <= 255):
            raise PresetError(f"{where}: trim must be true, false or a threshold 0..255")
        object.__setattr__(self, "trim", None if trim is None else float(trim))
        if self.rotate not in ROTATIONS or isinstance(self.rotate, bool) or not isinstance(self.rotate, int):
            raise PresetError(f"{where}: rotate must be one of {', '.join(map(str, ROTATIONS))}")
        for flag in ("flip", "flop", "grayscale"):
            if not isinstance(getattr(self, flag), bool):
                raise PresetError(f"{where}: {flag} must be true or false")
        if not number(self.blur) or not (self.blur == 0 or _BLUR[0] <= self.blur <= _BLUR[1]):
            raise PresetError(f"{where}: blur must be a sigma {_BLUR[0]}..{_BLUR[1]:g} (0: off)")
        sharpen = DEFAULT_SHARPEN if self.sharpen is True else 0.0 if self.sharpen is False else self.sharpen
        if not number(sharpen) or not (sharpen == 0 or _SHARPEN[0] <= sharpen <= _SHARPEN[1]):
            raise PresetError(f"{where}: sharpen must be true, false or a sigma {_SHARPEN[0]}..{_SHARPEN[1]:g}")
        if self.blur and sharpen:
            raise PresetError(f"{where}: blur and sharpen undo each other: set one")
        object.__setattr__(self, "blur", float(self.blur))
        object.__setattr__(self, "sharpen", float(sharpen))
        if not isinstance(self.pad, int) or isinstance(self.pad, bool) or not 0 <= self.pad <= _MAX_PAD:
            raise PresetError(f"{where}: pad must be an integer 0..{_MAX_PAD} (output pixels)")

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


#: The operations' fields, in the order they run (render/steps.py).
OPERATIONS = ("trim", "rotate", "flip", "flop", "blur", "sharpen", "grayscale", "pad")


def parse_presets(doc: Mapping[str, object], base: str | Path = ".") -> dict[str, Preset]:
    """Presets from a parsed TOML document; ``file:`` watermarks are read
    relative to ``base`` (the presets file's folder)."""
    presets: dict[str, Preset] = {}
    for name, body in doc.items():
        if not isinstance(body, dict):
            raise PresetError(f"preset {name!r}: expected a table")
        known = {"width", "height", "fit", "enlarge", "strip", "quality", "chroma", "auto_target",
                 "gravity", "background", "widths", "watermark", "public", *OPERATIONS}
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
