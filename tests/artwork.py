"""Inputs for the art-direction tests: an off-centre subject, a mark, presets."""

from __future__ import annotations

from pathlib import Path

import pyvips

#: The subject: a red disc centred at (0.85, 0.5) of a 1200x600 grey, slightly noisy field.
SUBJECT_SIZE, SUBJECT_AT, SUBJECT_RADIUS = (1200, 600), (0.85, 0.5), 80

PRESETS = """
[square]
width = 300
height = 300
fit = "cover"

[smart]
width = 300
height = 300
fit = "cover"
gravity = "attention"

[card]
width = 1280
height = 720
fit = "cover"
widths = [320, 640, 960, 1280]

[gallery]
width = 1920
height = 1920
widths = [320, 640, 960, 1280, 1920]

[shop]
width = 400
height = 400
watermark = { image = "file:mark.png", position = "south-east", margin = 16, opacity = 1.0, scale = 0.25 }

[shop-plain]
width = 400
height = 400
"""


def subject(path: Path) -> Path:
    w, h = SUBJECT_SIZE
    grey = pyvips.Image.gaussnoise(w, h, mean=128, sigma=4).cast("uchar")
    field = grey.bandjoin([grey, grey]).copy(interpretation="srgb")
    xy = pyvips.Image.xyz(w, h)
    cx, cy = SUBJECT_AT[0] * w, SUBJECT_AT[1] * h
    disc = ((xy[0] - cx) ** 2 + (xy[1] - cy) ** 2) < SUBJECT_RADIUS**2
    disc.ifthenelse([220, 20, 20], field).jpegsave(str(path), Q=92)
    return path


def mark(path: Path, colour: tuple[int, int, int] = (0, 0, 255)) -> Path:
    """A 100x50 mark: opaque in its colour, with a transparent 10 px border."""
    solid = pyvips.Image.black(80, 30).new_from_image([*colour, 255])
    solid.embed(10, 10, 100, 50, extend="background", background=[0, 0, 0, 0]).pngsave(str(path))
    return path


def write_presets(folder: Path, extra: str = "") -> Path:
    mark(folder / "mark.png")
    path = folder / "presets.toml"
    path.write_text(PRESETS + extra)
    return path


def red_share(image: pyvips.Image) -> float:
    """The share of pixels that belong to the red subject."""
    red = (image[0] > 170) & (image[1] < 90) & (image[2] < 90)
    return float(red.avg()) / 255


def decode(body: bytes) -> pyvips.Image:
    return pyvips.Image.new_from_buffer(body, "")
