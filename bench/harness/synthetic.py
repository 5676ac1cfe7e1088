"""Generated AI-tool-like pictures (flat illustration, diffusion-soft fields, a poster), drawn
with pyvips: the encoding case's AI references and the classes case's AI-tool PNGs."""

from __future__ import annotations


def _flat(n: int):  # type: ignore[no-untyped-def]
    """A flat illustration: gradient sky, a sun, hills in three flat colours."""
    import pyvips

    xy = pyvips.Image.xyz(n, n)
    x, y = xy[0], xy[1]
    sky = ((y * 0 + 40) + y * (150 / n)).bandjoin([(y * 0 + 90) + y * (120 / n), y * 0 + 200])
    sun = ((x - n * 0.7) ** 2 + (y - n * 0.3) ** 2) < (n * 0.12) ** 2
    image = sun.ifthenelse([255, 210, 60], sky)
    for i, colour in enumerate(([60, 140, 70], [40, 110, 60], [30, 80, 50])):
        ridge = y > (n * (0.55 + 0.12 * i) + (x * (6.28 * (i + 1) / n)).sin() * n * 0.05)
        image = ridge.ifthenelse(colour, image)
    return image.cast("uchar").copy(interpretation="srgb")


def _soft(n: int):  # type: ignore[no-untyped-def]
    """Diffusion-style softness: large blurred colour fields, a little fine grain."""
    import pyvips

    bands = [pyvips.Image.gaussnoise(n // 16, n // 16, mean=128, sigma=60).resize(16, kernel="cubic")
             .gaussblur(n / 64) for _ in range(3)]
    grain = pyvips.Image.gaussnoise(n, n, mean=0, sigma=1.5)
    return (bands[0].bandjoin(bands[1:]) + grain).cast("uchar").copy(interpretation="srgb")


def _poster(n: int):  # type: ignore[no-untyped-def]
    """UI/poster: white page, saturated blocks and thin dark bars (text-like edges)."""
    import pyvips

    image = pyvips.Image.black(n, n, bands=3) + [250, 250, 248]
    s = n // 32
    for row in range(4, 28, 2):
        for col in range(2, 30, 7):
            width = s * (3 + (row * col) % 4)
            image = image.draw_rect([30, 30, 40], col * s, row * s, width, s // 2, fill=True)
    for i, colour in enumerate(([220, 40, 60], [30, 120, 220], [250, 180, 20])):
        image = image.draw_rect(colour, s * (2 + 10 * i), s * 28, s * 8, s * 3, fill=True)
    return image.cast("uchar").copy(interpretation="srgb")


#: Name -> a function drawing that picture ``n`` px square.
SYNTHETIC = {"ai-flat": _flat, "ai-soft": _soft, "ai-poster": _poster}
