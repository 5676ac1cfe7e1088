"""Variant URLs: ``/v/<preset>/<id>.<fmt>?s=<signature>``, parsed with no I/O.

The preset segment may carry a ladder width and a focal point,
``<preset>@w640@f0.8x0.3`` (:mod:`imgproxy.modifiers`).

Every variant has exactly one URL: the raw path may hold no percent-escapes
(nothing in an id needs them), and the query is exactly one ``s``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from .errors import BadRequest, Forbidden
from .formats import FORMATS, OUTPUTS
from .modifiers import Focus, format_modifiers, parse_modifiers
from .presets import NAME as _PRESET
from .signing import canonical, sign

PREFIX = "/v/"
MAX_ID_LENGTH = 512
_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True, slots=True)
class VariantRequest:
    preset: str
    id: str
    fmt: str
    width: int | None = None  # a width from the preset's ladder
    focus: Focus | None = None  # a focal point, fractions of the oriented original

    @property
    def modifiers(self) -> str:
        return format_modifiers(self.width, self.focus)

    @property
    def canonical(self) -> str:
        return canonical(self.preset + self.modifiers, self.id, self.fmt)

    @property
    def content_type(self) -> str:
        return OUTPUTS[self.fmt].mime


def check_id(id: str) -> str:
    """An id: ``/``-separated segments of ``[A-Za-z0-9._-]``, no ``.``/``..``."""
    if not id or len(id) > MAX_ID_LENGTH:
        raise BadRequest(f"id must be 1..{MAX_ID_LENGTH} characters")
    for segment in id.split("/"):
        if not _SEGMENT.fullmatch(segment) or segment in (".", ".."):
            raise BadRequest("id segments are [A-Za-z0-9._-], not '.' or '..'")
    return id


def parse_path(path: str) -> VariantRequest:
    """``<preset>/<id>.<fmt>`` (the part after ``/v/``) to a request."""
    segment, sep, rest = path.partition("/")
    preset, *modifiers = segment.split("@")
    if not sep or not _PRESET.fullmatch(preset):
        raise BadRequest("expected /v/<preset>/<id>.<format>")
    id, dot, fmt = rest.rpartition(".")
    if not dot:
        raise BadRequest("expected /v/<preset>/<id>.<format>")
    width, focus = parse_modifiers(modifiers)
    return VariantRequest(preset, check_id(id), check_format(fmt), width, focus)


def check_format(fmt: str) -> str:
    if fmt not in OUTPUTS:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)}")
    return fmt


def signature_from_query(query: bytes) -> str:
    """The ``s`` parameter; any other parameter (or a second ``s``) is a 400."""
    if not query:
        raise Forbidden("missing signature")
    name, eq, value = query.partition(b"=")
    if name != b"s" or not eq or b"&" in value or b";" in value:
        raise BadRequest("the only query parameter allowed is s=<signature>")
    if not value:
        raise Forbidden("missing signature")
    try:
        return value.decode("ascii")
    except UnicodeDecodeError:
        raise Forbidden("bad signature") from None


def variant_url(key: str, preset: str, id: str, fmt: str, base_url: str = "", *,
                width: int | None = None, focus: Focus | None = None) -> str:
    request = VariantRequest(preset, check_id(id), check_format(fmt), width, focus)
    path = f"{PREFIX}{quote(request.canonical, safe='/@')}"
    return f"{base_url.rstrip('/')}{path}?s={sign(key, request.canonical)}"
