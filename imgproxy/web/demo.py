"""Sample originals for ``make run``: generated, so the repo carries no images."""

from __future__ import annotations

from pathlib import Path

SAMPLES = ("demo/gradient", "demo/zoneplate", "demo/waves")
#: Their sizes, as ``seed`` writes them: the gallery's width and height attributes.
SIZES = {"demo/gradient": (1600, 1066), "demo/zoneplate": (600, 600), "demo/waves": (1400, 900)}


def seed(root: Path) -> list[str]:
    """Write the samples into an empty originals folder; returns their ids."""
    import pyvips

    (root / "demo").mkdir(parents=True, exist_ok=True)
    xy = pyvips.Image.xyz(1600, 1066)
    red = xy[0] * (255 / 1600)
    green = xy[1] * (255 / 1066)
    blue = 255 - (red + green) / 2
    gradient = red.bandjoin([green, blue]).cast("uchar").copy(interpretation="srgb")
    gradient.jpegsave(str(root / "demo/gradient.jpg"), Q=90)

    zone = ((pyvips.Image.zone(600, 600) + 1) * 127.5).cast("uchar")
    zone.copy(interpretation="b-w").pngsave(str(root / "demo/zoneplate.png"))

    sines = (pyvips.Image.sines(1400, 900, hfreq=3, vfreq=2) + 1) * 127.5
    waves = sines.bandjoin([sines.rot180(), (sines * 0.5 + 64)]).cast("uchar")
    waves.copy(interpretation="srgb").webpsave(str(root / "demo/waves.webp"), Q=90)
    return list(SAMPLES)
