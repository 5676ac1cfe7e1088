"""What to render, decided from the preset and the source's header alone.

A :class:`Plan` is frozen and computed before any pixel is decoded, so every
limit (pixels, frames, output size) is enforced up front.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import TooLarge
from ..formats import ANIMATED_LOADERS, OUTPUTS
from ..presets import AUTO, POSITIONS, Preset, Watermark
from .autoquality import LADDERS


@dataclass(frozen=True, slots=True)
class Limits:
    max_source_pixels: int = 100_000_000
    max_frames: int = 256
    max_output_pixels: int = 50_000_000
    max_source_bytes: int = 64 * 1024 * 1024  # also caps a decompressed SVGZ
    max_svg_elements: int = 100_000
    input_formats: frozenset[str] = frozenset()  # allowed sniffed formats; empty: all we read
    max_source_side: int = 65_535


@dataclass(frozen=True, slots=True)
class Header:
    """What a header-only load tells about a source."""

    loader: str
    width: int
    height: int  # of one frame
    frames: int
    icc: bool = False  # has an embedded profile that is not sRGB
    alpha: bool = False  # has an alpha channel (``auto`` picks PNG over JPEG for it)
    swapped: bool = False  # EXIF orientation 5..8: upright, width and height trade places

    @property
    def upright(self) -> tuple[int, int]:
        return (self.height, self.width) if self.swapped else (self.width, self.height)


@dataclass(frozen=True, slots=True)
class Plan:
    width: int  # the box
    height: int
    crop: bool
    enlarge: bool
    fmt: str
    quality: int  # Q; with a target, the highest Q the per-image search may pick
    strip: bool
    frames: int  # frames to decode: 1, or all of an animation
    flatten: bool  # the output has no alpha channel
    chroma: str = "420"  # JPEG and AVIF chroma subsampling: "420" or "444"
    target: float | None = None  # quality "auto": the luma SSIM the output must reach
    effort: int | None = None  # encoder effort instead of the format's own (AVIF)


    fit: str = "inside"
    #: ``crop`` only: libvips' crop (``centre``, ``attention``, ``entropy``), or
    #: ``focus`` to scale to cover and cut the box around ``focus``.
    gravity: str = "centre"
    focus: tuple[float, float] | None = None
    background: tuple[int, int, int, int] = (255, 255, 255, 255)
    watermark: Watermark | None = None


def make_plan(header: Header, preset: Preset, fmt: str, limits: Limits,
              avif_effort: int | None = None, focus: tuple[float, float] | None = None) -> Plan:
    output = OUTPUTS[fmt]
    animate = header.frames > 1 and header.loader in ANIMATED_LOADERS and output.animates
    frames = header.frames if animate else 1
    if header.frames > limits.max_frames:
        raise TooLarge(
            f"source has {header.frames} frames; the limit is {limits.max_frames}",
            limit="max_frames",
        )
    side = max(header.width, header.height)
    if side > limits.max_source_side:
        # Cost is per row and per column too: a 1 x 99,000,000 PNG passes the
        # pixel limit and takes libvips 30 s to shrink.
        raise TooLarge(
            f"source is {header.width}x{header.height}; the limit is {limits.max_source_side} per side",
            limit="max_source_side",
        )
    pixels = header.width * header.height * frames
    if pixels > limits.max_source_pixels:
        raise TooLarge(
            f"source has {pixels} pixels; the limit is {limits.max_source_pixels}",
            limit="max_source_pixels",
        )
    out_w, out_h = output_size(header.width, header.height, preset)
    if out_w * out_h * frames > limits.max_output_pixels:
        raise TooLarge(
            f"variant would have {out_w * out_h * frames} pixels; "
            f"the limit is {limits.max_output_pixels}",
            limit="max_output_pixels",
        )
    quality = preset.quality[fmt]
    # An animation gets the format's default quality: a search would encode every frame each step.
    auto = quality == AUTO and frames == 1
    gravity = preset.gravity
    if preset.fit == "cover" and (focus is not None or (gravity in POSITIONS and gravity != "centre")):
        focus, gravity = focus or POSITIONS[gravity], "focus"
    if preset.fit == "cover" and frames > 1 and gravity != "focus":
        # libvips would crop a strip of frames as one tall image: every frame is
        # cut by crop.py instead, around the centre (no smart crop of animations).
        focus, gravity = (0.5, 0.5), "focus"
    return Plan(
        width=preset.width,
        height=preset.height,
        crop=preset.fit == "cover",
        enlarge=preset.enlarge,
        fmt=fmt,
        quality=int(quality) if quality != AUTO else LADDERS[fmt][-1] if auto else output.quality,
        strip=preset.strip,
        frames=frames,
        flatten=not output.alpha,
        chroma=preset.chroma,
        target=preset.auto_target if auto else None,
        effort=avif_effort if fmt == "avif" else None,
        fit=preset.fit,
        gravity=gravity,
        focus=focus if gravity == "focus" else None,
        background=_rgba(preset.background),
        watermark=preset.watermark,
    )


def _rgba(colour: str) -> tuple[int, int, int, int]:
    hex = colour.removeprefix("#") + ("ff" if len(colour) == 7 else "")
    r, g, b, a = (int(hex[i:i + 2], 16) for i in range(0, 8, 2))
    return r, g, b, a


def scale_of(header: Header, plan: Plan) -> float:
    """The scale from the source to ``plan``'s output, whichever way the
    source turns out to be oriented (the larger of the two)."""
    def fit(w: int, h: int) -> float:
        pick = max if plan.fit in ("cover", "fill") else min
        return pick(plan.width / w, plan.height / h)

    scale = max(fit(header.width, header.height), fit(header.height, header.width))
    return scale if plan.enlarge else min(scale, 1.0)


def output_size(width: int, height: int, preset: Preset) -> tuple[int, int]:
    """The variant's size for a (upright) source of ``width`` x ``height``.

    An upper bound used for limits; libvips rounds the same way to within a pixel.
    """
    if preset.fit in ("contain", "fill"):
        return preset.width, preset.height  # always exactly the box
    if preset.fit == "cover":
        scale = max(preset.width / width, preset.height / height)
    else:
        scale = min(preset.width / width, preset.height / height)
    if not preset.enlarge:
        scale = min(scale, 1.0)
    out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
    if preset.fit == "cover":
        out_w, out_h = min(out_w, preset.width), min(out_h, preset.height)
    return out_w, out_h
