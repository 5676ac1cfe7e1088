"""Named presets: what a variant looks like, validated once at start-up.

A preset's *hash* goes into every variant key, so editing a preset can never
serve renders made from its old definition.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Mapping

FORMATS = ("webp", "avif", "jpg", "png")
CONTENT_TYPES = MappingProxyType(
    {"webp": "image/webp", "avif": "image/avif", "jpg": "image/jpeg", "png": "image/png"}
)
#: Quality used for a format the preset does not mention. AVIF's scale is
#: harsher than JPEG's: q55 AVIF looks about like q82 JPEG at half the bytes.
DEFAULT_QUALITY = MappingProxyType({"webp": 80, "avif": 55, "jpg": 82, "png": 100})
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_MAX_SIDE = 16384


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
    quality: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise PresetError(f"preset name {self.name!r}: use a-z, 0-9, '-', '_'")
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
            if not isinstance(q, int) or isinstance(q, bool) or not 1 <= q <= 100:
                raise PresetError(f"preset {self.name!r}: quality.{fmt} must be 1..100")
        merged = {**DEFAULT_QUALITY, **self.quality}
        object.__setattr__(self, "quality", merged)
        object.__setattr__(self, "digest", _digest(self))

    digest: str = field(init=False, default="", compare=False)


def _digest(preset: Preset) -> str:
    definition = {k: v for k, v in asdict(preset).items() if k not in ("name", "digest")}
    definition["quality"] = dict(sorted(preset.quality.items()))
    canonical = json.dumps(definition, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def parse_presets(doc: Mapping[str, object]) -> dict[str, Preset]:
    presets: dict[str, Preset] = {}
    for name, body in doc.items():
        if not isinstance(body, dict):
            raise PresetError(f"preset {name!r}: expected a table")
        known = {"width", "height", "fit", "enlarge", "strip", "quality"}
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
