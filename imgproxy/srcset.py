"""``srcset`` attributes from a preset's width ladder: one signed URL per width.

    srcset(key, "card", "shop/42", "webp", [320, 640, 960], base_url="https://img.example.com")
    -> "https://img.example.com/v/card@w320/shop/42.webp?s=… 320w, …@w640/… 640w, …"

A width outside the preset's ``widths`` is refused by the server (400), so
pass the ladder from ``config/presets.toml`` (``imgproxy sign --srcset``
reads it there).
"""

from __future__ import annotations

from collections.abc import Iterable

from .modifiers import Focus
from .urls import variant_url


def srcset(key: str, preset: str, id: str, fmt: str, widths: Iterable[int], base_url: str = "",
           *, focus: Focus | None = None, signed: bool = True) -> str:
    return ", ".join(
        f"{variant_url(key, preset, id, fmt, base_url, width=w, focus=focus, signed=signed)} {w}w" for w in widths
    )
