"""imgproxy: signed, immutable image variants rendered once by libvips.

The public API is for backend services that mint URLs::

    from imgproxy import sign_url
    sign_url(key, "thumbnail", "gallery/42/photo", "webp", base_url="https://img.example.com")
"""

from __future__ import annotations

__version__ = "0.1.0"


def sign_url(key: str, preset: str, id: str, fmt: str = "webp", base_url: str = "") -> str:
    """``<base_url>/v/<preset>/<id>.<fmt>?s=<signature>`` signed with ``key``."""
    from .urls import variant_url

    return variant_url(key, preset, id, fmt, base_url)


__all__ = ["__version__", "sign_url"]
