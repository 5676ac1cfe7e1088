"""Operational endpoints for some addresses only: ``IMGPROXY_METRICS_ALLOW``.

``/metrics`` and ``/healthz`` (and ``/readyz``) are on the public port, and
a health answer costs a render. When ``metrics_allow`` lists networks
(``10.0.0.0/8,127.0.0.1``), a client outside them gets a 404 there, as if the
endpoint did not exist; variant URLs are never affected. The client address
is uvicorn's: the peer, or ``X-Forwarded-For`` from a proxy in
``IMGPROXY_TRUSTED_PROXIES`` (none by default), which ``imgproxy serve`` hands
to uvicorn as its ``forwarded_allow_ips``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.types import ASGIApp

from ..errors import NotFound
from .responses import Receive, Scope, Send, send_error

GUARDED = frozenset({"/metrics", "/healthz", "/readyz"})
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    """Parsed CIDRs (a bare address is a /32 or /128); ValueError names a bad one."""
    return tuple(ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip())


class AllowList:
    """Pure ASGI: ``app`` for allowed clients, 404 for the rest on :data:`GUARDED` paths."""

    def __init__(self, app: ASGIApp, allowed: tuple[Network, ...]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.allowed and scope["type"] == "http" and scope["path"] in GUARDED and not self._allows(scope):
            await send_error(send, NotFound("not found"))
            return
        await self.app(scope, receive, send)

    def _allows(self, scope: Scope) -> bool:
        client = scope.get("client")
        try:
            address = ipaddress.ip_address(client[0]) if client else None
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return address is not None and any(address in network for network in self.allowed)
