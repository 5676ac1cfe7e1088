"""imgproxy: signed, immutable image variants rendered once by libvips.

The public API is for backend services that mint URLs::

    from imgproxy import sign_url
    sign_url(key, "thumbnail", "gallery/42/photo", "webp", base_url="https://img.example.com")
    sign_url(key, "card", "shop/42", "webp", width=640, focus=(0.8, 0.3))   # .../v/card@w640@f0.8x0.3/...
    srcset(key, "card", "shop/42", "webp", [320, 640, 960])                 # "<url> 320w, <url> 640w, ..."
"""

from __future__ import annotations

from collections.abc import Iterable

__version__ = "0.1.0"


def sign_url(key: str, preset: str, id: str, fmt: str = "webp", base_url: str = "", *,
             width: int | None = None, focus: tuple[float, float] | None = None) -> str:
    """``<base_url>/v/<preset>[@w<width>][@f<x>x<y>]/<id>.<fmt>?s=<signature>`` signed with ``key``."""
    from .urls import variant_url

    return variant_url(key, preset, id, fmt, base_url, width=width, focus=focus)


def srcset(key: str, preset: str, id: str, fmt: str, widths: Iterable[int], base_url: str = "", *,
           focus: tuple[float, float] | None = None) -> str:
    """A ``srcset`` attribute: a signed URL per width of the preset's ladder."""
    from .srcset import srcset as _srcset

    return _srcset(key, preset, id, fmt, widths, base_url, focus=focus)


__all__ = ["__version__", "sign_url", "srcset"]
