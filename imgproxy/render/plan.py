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
    # The preset's operations (docs/URLS.md, "Operations"), each off by default.
    trim: float | None = None
    rotate: int = 0
    flip: bool = False
    flop: bool = False
    blur: float = 0.0
    sharpen: float = 0.0
    grayscale: bool = False
    pad: int = 0

    @property
    def fit_box(self) -> tuple[int, int]:
        """The box the image is fitted to before it is turned: a quarter turn swaps it."""
        return (self.height, self.width) if self.rotate in (90, 270) else (self.width, self.height)


def turned(focus: tuple[float, float], rotate: int, flip: bool, flop: bool) -> tuple[float, float]:
    """A point of the upright original (fractions) where ``rotate``, ``flip`` and ``flop`` move it."""
    x, y = focus
    for _ in range(rotate // 90):
        x, y = 1 - y, x  # a quarter turn clockwise
    return (1 - x if flop else x), (1 - y if flip else y)


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
    if focus is not None:  # the URL's point is of the original; the crop is of the turned image
        focus = turned(focus, preset.rotate, preset.flip, preset.flop)
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
        trim=preset.trim,
        rotate=preset.rotate,
        flip=preset.flip,
        flop=preset.flop,
        blur=preset.blur,
        sharpen=preset.sharpen,
        grayscale=preset.grayscale,
        pad=preset.pad,
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

    if plan.trim is not None:
        return 1.0  # trimming needs the whole original: its borders are unknown until decoded
    scale = max(fit(header.width, header.height), fit(header.height, header.width))
    return scale if plan.enlarge else min(scale, 1.0)


def output_size(width: int, height: int, preset: Preset) -> tuple[int, int]:
    """The variant's size for a (upright) source of ``width`` x ``height``.

    An upper bound used for limits; libvips rounds the same way to within a pixel.
    """
    if preset.rotate in (90, 270):
        width, height = height, width
    if preset.trim is not None and preset.fit == "inside":
        # What is left after trimming may have any shape: bound it by the box.
        out_w, out_h = (preset.width, preset.height) if preset.enlarge else \
            (min(width, preset.width), min(height, preset.height))
    else:
        out_w, out_h = _fitted(width, height, preset)
    return out_w + 2 * preset.pad, out_h + 2 * preset.pad


def _fitted(width: int, height: int, preset: Preset) -> tuple[int, int]:
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
