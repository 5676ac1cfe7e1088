"""The workload classes: the originals our users send, each with the preset they use
(bench/cases/classes.py measures their misses, bench/cases/avif.py their AVIF against WebP)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .context import Bench
from .paths import CONFIG_PRESETS, TESTIMAGES
from .synthetic import SYNTHETIC

HEIC = TESTIMAGES / "heic" / "mei__exif-at-eof.heic"  # iPhone 11 Pro, 3024x4032, Display P3
GIF = TESTIMAGES / "animated" / "thumbor__Rotating_earth_large.gif"  # 400x400, 44 frames


@dataclass(frozen=True)
class WorkClass:
    name: str
    what: str  # for the report
    preset: str  # in config/presets.toml
    sources: tuple[Path, ...]
    thumbor_reads: bool = True

    def load_preset(self):  # type: ignore[no-untyped-def]
        """Its ``imgproxy.presets.Preset``, read from config/presets.toml."""
        from imgproxy.presets import load_presets

        return load_presets(str(CONFIG_PRESETS))[self.preset]


#: Smoke runs: small files down the same decoder paths (HEVC HEIC, animated GIF).
SMOKE_HEIC = TESTIMAGES / "heic" / "libheif__rainbow-451x461.heic"
SMOKE_GIF = TESTIMAGES / "animated" / "libvips__cogs.gif"


def classes(b: Bench) -> list[WorkClass]:
    smoke = b.profile.name == "smoke"
    ai = _ai_pngs(b.inputs.root / "class-src", smoke)
    heic, gif = (SMOKE_HEIC, SMOKE_GIF) if smoke else (HEIC, GIF)
    return [
        # inputs.large is a hard link of large/mei__Issue_266.jpg (a small copy in smoke runs).
        WorkClass("camera22", "22 MP camera JPEG → 1200 px", "web", (b.inputs.large,)),
        WorkClass("heic12", "12 MP iPhone HEIC → 1200 px", "web", (heic,), thumbor_reads=False),
        WorkClass("ai-dalle", "1–2 MP AI-tool PNG → dalle (1024 px)", "dalle", ai),
        WorkClass("ai-sd", "1–2 MP AI-tool PNG → sd (768 px)", "sd", ai),
        WorkClass("thumb2mp", "2 MP JPEG → 300 px thumbnail", "thumbnail", tuple(b.inputs.photos)),
        WorkClass("gif", "animated GIF (400×400, 44 frames) → 300 px", "thumbnail", (gif,)),
    ]


def _ai_pngs(folder: Path, smoke: bool) -> tuple[Path, ...]:
    """DALL-E / Stable Diffusion sized PNGs (1792×1024, 1024×1024, 1536×1024): flat
    illustration, diffusion-soft fields and a poster (bench/harness/synthetic.py)."""
    folder.mkdir(parents=True, exist_ok=True)
    sizes = {"ai-flat": (1792, 1024), "ai-soft": (1024, 1024), "ai-poster": (1536, 1024)}
    out = []
    for name, (width, height) in sizes.items():
        w, h = (width // 8, height // 8) if smoke else (width, height)
        path = folder / f"{name}.png"
        if not path.exists():
            n = max(w, h)  # drawn square, then squeezed to the tool's aspect
            SYNTHETIC[name](n).resize(w / n, vscale=h / n).cast("uchar").pngsave(str(path), compression=6)
        out.append(path)
    return tuple(out)
