"""The SSRF guard: HTTP origins are dialled only at checked addresses.

The check is on the address actually dialled, not on the hostname: the
network backend under the HTTP client resolves the host itself, refuses the
connection if *any* address is blocked, and then connects to the checked IP
(TLS still verifies and sends SNI for the hostname, which httpcore passes
separately). So a DNS name that points at 127.0.0.1 or 169.254.169.254, a
redirect to one, or DNS rebinding between a check and the connect all fail
before a packet is sent to the blocked address.

    always refused       link-local (169.254/16, fe80::/10, so the cloud
                         metadata endpoints), unspecified, multicast,
                         reserved, 0/8, 192.0.0/24, the deprecated
                         site-local fec0::/10, the named metadata
                         addresses (Azure's 168.63.129.16 among them), and
                         64:ff9b::/32 outside the well-known NAT64 /96
    refused by default   loopback and private ranges (10/8, 172.16/12,
                         192.168/16, 100.64/10, fc00::/7); the
                         ``http_allow_private`` setting allows them for
                         development
    allowed              global unicast addresses

An IPv6 address that carries an IPv4 one to an IPv4 host is judged by the
IPv4 rules: IPv4-mapped ``::ffff:a.b.c.d``, IPv4-translated
``::ffff:0:a.b.c.d``, IPv4-compatible ``::a.b.c.d``, NAT64 ``64:ff9b::/96``
and 6to4 ``2002::/16`` (so ``64:ff9b::a9fe:a9fe`` is 169.254.169.254).
The rest of ``64:ff9b::/32`` is refused whole: RFC 8215's local-use NAT64
``64:ff9b:1::/48`` embeds an IPv4 address at a place only the translator's
configuration knows (``64:ff9b:1::a9fe:a9fe`` and ``64:ff9b:1:a9fe:a9:fe00::``
can both be 169.254.169.254), and Python's ``is_global`` calls it global
before 3.11.10.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable

import anyio
import httpcore
import httpx

from ..errors import BadGateway

log = logging.getLogger("imgproxy.stores")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254", "169.254.170.2", "100.100.100.200", "fd00:ec2::254", "168.63.129.16",
))
# 64:ff9b::/96 never gets here: embedded_ipv4() has turned it into IPv4 first.
_REFUSED = tuple(ipaddress.ip_network(n) for n in ("0.0.0.0/8", "192.0.0.0/24", "fec0::/10", "64:ff9b::/32"))
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_IPV4_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
#: The kernel's receive buffer per origin connection. Under uvloop, anyio's
#: stream queues whatever one readiness event reads (libuv reads until the
#: socket is empty, up to 32 times), and loopback/LAN buffers autotune to
#: megabytes: 30 fast origin downloads queued ~190 MiB in the server. 256 KiB
#: (the kernel doubles it) still fills 25 MB/s at a 20 ms round trip.
RECEIVE_BUFFER = 256 * 1024


class BlockedAddress(BadGateway):
    """The origin resolved to an address we refuse to dial."""


def embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address that ``address`` reaches through a translator or tunnel, if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    low = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if address in _NAT64 or address in _IPV4_TRANSLATED:
        return low
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: or ::1
        return low
    return None


def allowed(address: IPAddress, allow_private: bool) -> bool:
    if isinstance(address, ipaddress.IPv6Address):
        address = embedded_ipv4(address) or address
    if address in _METADATA or address.is_link_local or address.is_unspecified or address.is_multicast:
        return False
    if any(address in network for network in _REFUSED):
        return False
    if address.is_global:
        return True
    return allow_private and (address.is_loopback or address.is_private or address in _CGNAT)


_CGNAT = ipaddress.ip_network("100.64.0.0/10")


async def resolve(host: str, port: int) -> list[IPAddress]:
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).partition("%")[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, dialling only addresses :func:`allowed` passes."""

    def __init__(self, allow_private: bool, inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self.allow_private = allow_private
        self.inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        with anyio.fail_after(timeout):
            addresses = await resolve(host, port)
        blocked = [a for a in addresses if not allowed(a, self.allow_private)]
        if blocked or not addresses:
            log.warning("refused to connect to origin %s at %s", host, ", ".join(map(str, blocked)))
            raise BlockedAddress("the origin's address is not allowed")  # the host is in the log
        error: Exception | None = None
        for address in addresses:
            try:
                return await self.inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                error = exc
        assert error is not None
        raise error

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise BlockedAddress("unix sockets are not origins")

    async def sleep(self, seconds: float) -> None:
        await self.inner.sleep(seconds)


class GuardedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport over a :class:`GuardedBackend`; never uses proxies.

    Replacing ``_pool`` is the one private thing we rely on. httpx 0.28's
    ``AsyncHTTPTransport`` takes no network backend, and the public way round
    it (our own ``AsyncBaseTransport`` over an httpcore pool) would have to
    copy httpx's private ``map_httpcore_exceptions`` and response wrapping,
    which is more private behaviour, not less. If httpx renames ``_pool``,
    ``test_guarded_client_never_connects_to_a_blocked_listener`` fails.
    """

    def __init__(self, allow_private: bool, limits: httpx.Limits) -> None:
        super().__init__(limits=limits, trust_env=False)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(allow_private),
            socket_options=[(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)],
        )
