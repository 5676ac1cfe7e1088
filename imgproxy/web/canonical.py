"""The canonical URL of a variant requested with extra query parameters.

Social networks and mail tools append ``?utm_source=...`` and the like. A
request whose query holds exactly one ``s``, valid for its path, plus other
parameters is redirected (308, cacheable) to the path with ``?s=`` alone, so
every variant keeps one URL and one cached body. Anything else keeps its 400.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qsl

from ..signing import verify
from ..urls import PREFIX
from .responses import Scope

_PREFIX = PREFIX.encode()


def canonical_location(keys: Sequence[str], scope: Scope) -> bytes | None:
    """``/v/<path>?s=<signature>`` when the request deserves a redirect there, else None."""
    try:
        query: str = scope.get("query_string", b"").decode("ascii")
        pairs = parse_qsl(query, keep_blank_values=True)
    except UnicodeDecodeError:
        return None
    signatures = [value for name, value in pairs if name == "s"]
    if len(signatures) != 1 or len(pairs) < 2:
        return None
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    try:
        path = raw[len(_PREFIX):].decode("ascii")
    except UnicodeDecodeError:
        return None
    if not verify(keys, path, signatures[0]):
        return None
    return raw + b"?s=" + signatures[0].encode("ascii")
