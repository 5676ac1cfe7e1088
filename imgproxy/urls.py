"""Signed URLs, parsed with no I/O::

    /v/<preset>/<id>.<fmt>?s=<signature>               a variant
    /meta/<id>.json?s=<signature>                      an original's metadata document
    /o/<id>?e=<unix expiry>[&d=inline]&s=<signature>   the original itself, until the expiry

Every URL is exactly one string: the raw path may hold no percent-escapes
(nothing in an id needs them), and the query's parameters are exactly these,
in this order.

The preset segment may carry a ladder width and a focal point,
``<preset>@w640@f0.8x0.3`` (:mod:`imgproxy.modifiers`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import quote

from .errors import BadRequest, Forbidden
from .formats import AUTO, FORMATS, OUTPUTS
from .modifiers import Focus, format_modifiers, parse_modifiers
from .presets import NAME as _PRESET
from .signing import canonical, meta_canonical, original_canonical, sign

PREFIX = "/v/"
META_PREFIX = "/meta/"
ORIGINAL_PREFIX = "/o/"
_EXPIRY = re.compile(r"^[0-9]{1,12}$")
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
    if fmt not in OUTPUTS and fmt != AUTO:
        raise BadRequest(f"format must be one of {', '.join(FORMATS)} or {AUTO}")
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
                width: int | None = None, focus: Focus | None = None, signed: bool = True) -> str:
    """The variant's URL; ``signed=False`` leaves out ``?s=`` (served for a public preset only)."""
    request = VariantRequest(preset, check_id(id), check_format(fmt), width, focus)
    path = f"{base_url.rstrip('/')}{PREFIX}{quote(request.canonical, safe='/@')}"
    return f"{path}?s={sign(key, request.canonical)}" if signed else path


def meta_url(key: str, id: str, base_url: str = "") -> str:
    id = check_id(id)
    return f"{base_url.rstrip('/')}{META_PREFIX}{id}.json?s={sign(key, meta_canonical(id))}"


def parse_meta_path(path: str) -> str:
    """``<id>.json`` (the part after ``/meta/``) to the id."""
    id, dot, ext = path.rpartition(".")
    if not dot or ext != "json":
        raise BadRequest("expected /meta/<id>.json")
    return check_id(id)


@dataclass(frozen=True, slots=True)
class OriginalRequest:
    id: str
    expires: int  # unix seconds
    inline: bool  # Content-Disposition: inline instead of attachment
    signature: str

    @property
    def canonical(self) -> str:
        return original_canonical(self.id, self.expires, self.inline)


def parse_original(path: str, query: bytes) -> OriginalRequest:
    """``<id>`` (after ``/o/``) and ``e=<expiry>[&d=inline]&s=<signature>``."""
    id = check_id(path)
    try:
        params = [p.partition("=") for p in query.decode("ascii").split("&")]
    except UnicodeDecodeError:
        raise BadRequest("the query must be ASCII") from None
    names = [name for name, _, _ in params]
    if names not in (["e", "s"], ["e", "d", "s"]) or not all(eq for _, eq, _ in params):
        if "s" not in names:
            raise Forbidden("missing signature")
        raise BadRequest("expected /o/<id>?e=<unix expiry>[&d=inline]&s=<signature>")
    values = dict((name, value) for name, _, value in params)
    if not _EXPIRY.fullmatch(values["e"]):
        raise BadRequest("e must be a unix time in seconds")
    if "d" in values and values["d"] != "inline":
        raise BadRequest("d may only be 'inline'")
    return OriginalRequest(id, int(values["e"]), "d" in values, values["s"])


def original_url(key: str, id: str, expires: int, inline: bool = False, base_url: str = "") -> str:
    """A download link for original ``id``, valid until ``expires`` (unix seconds)."""
    id = check_id(id)
    query = f"e={expires}" + ("&d=inline" if inline else "")
    return f"{base_url.rstrip('/')}{ORIGINAL_PREFIX}{id}?{query}&s={sign(key, original_canonical(id, expires, inline))}"
