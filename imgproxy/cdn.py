"""The CDN in front: a surrogate key per original, and purging a CDN by it.

Every variant and ``/meta/`` response of an original carries its surrogate key
(in ``IMGPROXY_SURROGATE_KEY_HEADER``), so one purge by key drops every URL of
that original the CDN holds (each preset, format, ``.auto`` spelling and
signature) without listing them::

    surrogate_key(id)        "o-" + 16 hex of sha256(id): one header token, whatever the id holds
    purgers(cdn_purge)       "varnish:http://edge:6081" -> Varnish(...), from the table PURGERS
    Varnish.purge(keys)      BAN / with X-Purge-Key: <key> <key>… (deploy/varnish.vcl bans them)

httpx errors and unexpected answers are mapped to :class:`CdnError` here, naming the CDN.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Protocol

import httpx

#: The header deploy/varnish.vcl reads the keys of a BAN from.
PURGE_KEY_HEADER = "X-Purge-Key"
#: Keys per BAN: one request for a few ids, a bounded header for thousands.
KEYS_PER_BAN = 64


def surrogate_key(id: str) -> str:
    """The surrogate key of original ``id``: stable across servers and releases.

    A hash, not the id: an id holds ``/`` and may be hundreds of characters,
    while CDNs cap a key's length and some forbid ``/`` in one. 64 bits keep
    collisions out of reach for any store (one would only purge a second
    original's CDN copies too).
    """
    return "o-" + hashlib.sha256(id.encode()).hexdigest()[:16]


class CdnError(Exception):
    """A CDN purge that failed: the message names the CDN and what it said."""


class Purger(Protocol):
    name: str

    async def purge(self, client: httpx.AsyncClient, keys: Sequence[str]) -> None: ...


class Varnish:
    """deploy/varnish.vcl: ``BAN`` with ``X-Purge-Key``, from an address in its ``purgers`` ACL."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/")
        self.name = f"varnish:{self.url}"

    async def purge(self, client: httpx.AsyncClient, keys: Sequence[str]) -> None:
        for start in range(0, len(keys), KEYS_PER_BAN):
            batch = " ".join(keys[start:start + KEYS_PER_BAN])
            try:
                response = await client.request("BAN", self.url + "/", headers={PURGE_KEY_HEADER: batch})
            except httpx.HTTPError as exc:
                raise CdnError(f"{self.name}: {type(exc).__name__}: {exc or 'no answer'}") from exc
            if response.status_code != 200:
                raise CdnError(f"{self.name}: BAN answered {response.status_code} {response.reason_phrase}"
                               f" (is this host in the VCL's purgers ACL?)")


#: ``IMGPROXY_CDN_PURGE`` entries are ``<kind>:<url>``; the kind picks the class.
PURGERS: dict[str, type[Varnish]] = {"varnish": Varnish}


def purgers(cdn_purge: Sequence[str]) -> list[Purger]:
    """The CDNs of ``IMGPROXY_CDN_PURGE`` (validated by :mod:`imgproxy.config`)."""
    found: list[Purger] = []
    for entry in cdn_purge:
        kind, _, url = entry.partition(":")
        found.append(PURGERS[kind](url))
    return found
