"""Reading an original's metadata without trusting it.

Metadata is whatever the file says: PNG text keys are Latin-1, EXIF strings
come in any encoding, and pyvips decodes every name and string as UTF-8, so
its ``get_fields()`` raises ``UnicodeDecodeError`` on a PNG whose ``tEXt``
key is ``"k\\xe9y"`` (and leaks the rest of the list). Everything in
``render/`` reads metadata through here, where bad bytes become U+FFFD.
"""

from __future__ import annotations

import pyvips
from pyvips import ffi, glib_lib, vips_lib


def field_names(image: pyvips.Image) -> list[str]:
    """Every metadata name on ``image``, undecodable bytes replaced."""
    array = vips_lib.vips_image_get_fields(image.pointer)
    names: list[str] = []
    try:
        i = 0
        while array[i] != ffi.NULL:
            names.append(ffi.string(array[i]).decode("utf-8", "replace"))
            glib_lib.g_free(array[i])
            i += 1
    finally:
        glib_lib.g_free(array)
    return names


def has(image: pyvips.Image, name: str) -> bool:
    return bool(image.get_typeof(name) != 0)
