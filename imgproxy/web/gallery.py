"""``GET /`` in development: a gallery of the sample originals (:mod:`imgproxy.demo`).

Each image is a ``<picture>`` with AVIF and WebP ``<source>``s and a JPEG
``<img>``; each ``srcset`` lists the widths the presets ``thumbnail``,
``preview`` and ``web`` render of that original, ``sizes`` lets the browser
pick, ``width``/``height`` reserve the space (no layout shift), and
``loading="lazy"`` defers what is off-screen. URLs are signed here with the
first key; the browser picks the first format it decodes.
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

from ..demo import SAMPLES, SIZES
from ..presets import Preset
from ..render.plan import output_size
from ..urls import variant_url

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


def page(key: str, presets: Mapping[str, Preset]) -> str:
    usable = [presets[name] for name in GALLERY_PRESETS if name in presets]
    return _PAGE.format(presets=escape(", ".join(p.name for p in usable)),
                        figures="\n".join(_figure(key, usable, id) for id in SAMPLES))


def _figure(key: str, presets: list[Preset], id: str) -> str:
    width, height = SIZES[id]
    widths: dict[int, Preset] = {}  # one preset per distinct width: a srcset lists each width once
    for preset in presets:
        widths.setdefault(output_size(width, height, preset)[0], preset)
    largest = max(widths)
    shown = output_size(width, height, widths[largest])
    sizes = f"(max-width: {largest + _MARGINS}px) calc(100vw - {_MARGINS}px), {largest}px"

    def srcset(fmt: str) -> str:
        return ", ".join(f"{variant_url(key, p.name, id, fmt)} {w}w" for w, p in sorted(widths.items()))

    sources = "\n".join(f'  <source type="{mime}" srcset="{escape(srcset(fmt))}" sizes="{sizes}">'
                        for mime, fmt in SOURCES)
    fallback = variant_url(key, widths[largest].name, id, "jpg")
    return (f"<figure>\n<picture>\n{sources}\n"
            f'  <img src="{escape(fallback)}" srcset="{escape(srcset("jpg"))}" sizes="{sizes}"'
            f' width="{shown[0]}" height="{shown[1]}" loading="lazy" decoding="async" alt="{escape(id)}">\n'
            f"</picture>\n<figcaption><code>{escape(id)}</code></figcaption>\n</figure>")
