"""``GET /`` in development: a gallery of the sample originals (:mod:`imgproxy.web.demo`).

Each image is a ``<picture>`` with AVIF and WebP ``<source>``s and a JPEG
``<img>``; each ``srcset`` lists the width ladder of the ``web`` preset
(``widths``, URLs ``web@w<width>``), or without one the widths the presets
``thumbnail``, ``preview`` and ``web`` render, ``sizes`` lets the browser
pick, ``width``/``height`` reserve the space (no layout shift), and
``loading="lazy"`` defers what is off-screen. URLs are signed here with the
first key; the browser picks the first format it decodes.

Only the samples the originals store holds are shown: ``imgproxy serve``
seeds them into the default originals folder only, and with another store a
page of broken images would say nothing about why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from html import escape

from ..errors import ImgproxyError
from ..presets import Preset
from ..render.plan import output_size
from ..stores import Downloads
from ..urls import variant_url
from .demo import SAMPLES, SIZES

GALLERY_PRESETS = ("thumbnail", "preview", "web")
#: <source> type -> URL format, in the browser's order of preference; JPEG is the <img>.
SOURCES = (("image/avif", "avif"), ("image/webp", "webp"))
_MARGINS = 48  # px: the body's margins

_PAGE = """<!doctype html>
<html lang="en">
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>imgproxy demo</title>
<style>
body {{ font: 16px/1.4 system-ui, sans-serif; margin: 24px; max-width: 1200px; }}
figure {{ margin: 0 0 32px; }}
img {{ display: block; max-width: 100%; height: auto; background: #eee; }}
code {{ font-size: 14px; }}
</style>
<h1>imgproxy demo</h1>
<p>Sample originals as <code>&lt;picture&gt;</code>: AVIF, WebP or JPEG at the width of the
<code>{presets}</code> presets, whichever the browser takes first.</p>
{figures}
</html>
"""
_MISSING = """<p>This originals store holds none of the samples ({samples}): <code>imgproxy serve</code>
writes them only into the default originals folder. Upload them (<code>imgproxy put</code>) or
point <code>IMGPROXY_ORIGINALS</code> at the default folder to see them here.</p>"""


async def samples_in(store: object) -> list[str]:
    """The sample ids ``store`` holds (an originals store that cannot locate holds none)."""
    if not isinstance(store, Downloads):
        return []
    locate = store.locate
    found = []
    for id in SAMPLES:
        try:
            await locate(id)
        except ImgproxyError:  # not there, or the store is unavailable: either way not shown
            continue
        found.append(id)
    return found


def page(key: str, presets: Mapping[str, Preset], samples: Sequence[str] = SAMPLES) -> str:
    usable = [presets[name] for name in GALLERY_PRESETS if name in presets]
    figures = "\n".join(_figure(key, usable, id) for id in samples)
    return _PAGE.format(presets=escape(", ".join(p.name for p in usable)),
                        figures=figures or _MISSING.format(samples=escape(", ".join(SAMPLES))))


def _candidates(presets: list[Preset], width: int, height: int) -> dict[int, tuple[Preset, int | None]]:
    """Output width -> (preset, ladder width or None): each width once."""
    ladder = next((p for p in presets if p.name == "web" and p.widths), None)
    if ladder is not None:
        found: dict[int, tuple[Preset, int | None]] = {
            output_size(width, height, ladder.at_width(w))[0]: (ladder, w) for w in ladder.widths}
        return {w: found[w] for w in found if w <= width} or found  # no upscaled duplicates
    candidates: dict[int, tuple[Preset, int | None]] = {}
    for preset in presets:
        candidates.setdefault(output_size(width, height, preset)[0], (preset, None))
    return candidates


def _figure(key: str, presets: list[Preset], id: str) -> str:
    width, height = SIZES[id]
    widths = _candidates(presets, width, height)
    largest = max(widths)
    preset, rung = widths[largest]
    shown = output_size(width, height, preset.at_width(rung) if rung else preset)
    sizes = f"(max-width: {largest + _MARGINS}px) calc(100vw - {_MARGINS}px), {largest}px"

    def url(fmt: str, preset: Preset, rung: int | None) -> str:
        return variant_url(key, preset.name, id, fmt, width=rung)

    def srcset(fmt: str) -> str:
        return ", ".join(f"{url(fmt, p, rung)} {w}w" for w, (p, rung) in sorted(widths.items()))

    sources = "\n".join(f'  <source type="{mime}" srcset="{escape(srcset(fmt))}" sizes="{sizes}">'
                        for mime, fmt in SOURCES)
    fallback = url("jpg", preset, rung)
    return (f"<figure>\n<picture>\n{sources}\n"
            f'  <img src="{escape(fallback)}" srcset="{escape(srcset("jpg"))}" sizes="{sizes}"'
            f' width="{shown[0]}" height="{shown[1]}" loading="lazy" decoding="async" alt="{escape(id)}">\n'
            f"</picture>\n<figcaption><code>{escape(id)}</code></figcaption>\n</figure>")
