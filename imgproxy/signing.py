"""HMAC-SHA256 URL signatures with key rotation.

The signature of a variant is::

    base64url_nopad( HMAC-SHA256( key = utf8(secret), msg = utf8("<preset>/<id>.<fmt>") ) )

Metadata documents and original downloads have their own canonical strings,
which no variant's can equal (a variant's ends in ``.<fmt>``, and ``?``
appears in no id)::

    GET /meta/<id>.json   "meta/<id>"
    GET /o/<id>           "o/<id>?e=<unix expiry>"  or  "o/<id>?e=<unix expiry>&d=inline"

(so a preset may not be named ``meta``: :data:`imgproxy.presets.RESERVED`).

The first key signs; every key verifies, so a new key can be rolled out
before the old one is retired. Verification compares against every key with
``hmac.compare_digest`` and never stops early, so timing says nothing about
which key (if any) matched or how much of a guess was right.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

SIGNATURE_LENGTH = 43  # 32 bytes of SHA-256 in unpadded base64url


def canonical(preset: str, id: str, fmt: str) -> str:
    return f"{preset}/{id}.{fmt}"


def meta_canonical(id: str) -> str:
    return f"meta/{id}"


def original_canonical(id: str, expires: int, inline: bool = False) -> str:
    return f"o/{id}?e={expires}" + ("&d=inline" if inline else "")


def sign(key: str, message: str) -> str:
    digest = hmac.new(key.encode(), message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def verify(keys: Sequence[str], message: str, signature: str) -> bool:
    given = signature.encode("ascii", "replace")
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(sign(key, message).encode(), given)
    return matched
