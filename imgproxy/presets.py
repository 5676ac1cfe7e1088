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
part of a preset: see the README's encoder table.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
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


class PresetError(ValueError):
    """A preset definition is invalid; the message names the preset."""


@dataclass(frozen=True)
class Preset:
    name: str
    width: int
    height: int
    fit: str = "inside"  # "inside": fit in the box; "cover": fill it, centre crop
    enlarge: bool = False
    strip: bool = True
    # A plain dict (mapping proxies do not pickle to worker processes); never mutated.
    quality: Mapping[str, int | str] = field(default_factory=dict)  # a number, or "auto"
    chroma: str = "420"  # chroma subsampling of JPEG and AVIF: "420" or "444"
    auto_target: float | None = None  # luma SSIM for "auto" qualities; set when one is "auto"

    def __post_init__(self) -> None:
        if not NAME.fullmatch(self.name):
            raise PresetError(f"preset name {self.name!r}: use a-z, 0-9, '-', '_'")
        if self.name in RESERVED:
            raise PresetError(f"preset name {self.name!r} is reserved")
        for side in ("width", "height"):
            value = getattr(self, side)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= _MAX_SIDE:
                raise PresetError(f"preset {self.name!r}: {side} must be an integer 1..{_MAX_SIDE}")
        if self.fit not in ("inside", "cover"):
            raise PresetError(f"preset {self.name!r}: fit must be 'inside' or 'cover'")
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


def _digest(preset: Preset) -> str:
    definition: dict[str, Any] = {}
    for f in fields(preset):
        if f.name in ("name", "digest", "quality"):
            continue
        value = getattr(preset, f.name)
        default = f.default_factory() if f.default_factory is not MISSING else f.default
        if f.name in _ALWAYS_HASHED or value != default:
            definition[f.name] = value
    definition["quality"] = {
        fmt: q for fmt, q in sorted(preset.quality.items())
        if fmt in _FIRST_FORMATS or q != DEFAULT_QUALITY[fmt]
    }
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def parse_presets(doc: Mapping[str, object]) -> dict[str, Preset]:
    presets: dict[str, Preset] = {}
    for name, body in doc.items():
        if not isinstance(body, dict):
            raise PresetError(f"preset {name!r}: expected a table")
        known = {"width", "height", "fit", "enlarge", "strip", "quality", "chroma", "auto_target"}
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
        presets[name] = Preset(name=name, quality=quality, **options)
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
    return parse_presets(doc)
