"""Where webhooks may be delivered: public addresses only, unless an address is explicitly allowed.

A subscriber URL is the platform making a request on a caller's behalf (SSRF): without a check, a
webhook to 127.0.0.1, 169.254.169.254 or a private range reaches internal services and cloud metadata.
The host is resolved at DELIVERY time and the request goes to the address that was checked (not to a
second, possibly different, DNS answer: rebinding), with the original Host header and TLS name.
Creation checks the same rule early, so an obvious mistake is a 422 naming the url.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
# host, port -> the addresses the host resolves to (tests pass their own).
Resolver = Callable[[str, int], Awaitable[list[str]]]


class TargetRefused(Exception):
    """The webhook's host is, or resolves to, an address deliveries may not go to."""


def _unmapped(address: IPAddress) -> IPAddress:
    # ::ffff:127.0.0.1 and 64:ff9b::/96-free forms reach the IPv4 address: judge that one.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_public(address: IPAddress) -> bool:
    """True for a globally routable unicast address (not loopback, link-local, private, multicast, reserved...)."""
    address = _unmapped(address)
    return address.is_global and not (
        address.is_multicast or address.is_reserved or address.is_loopback or address.is_link_local
    )


def allowed(address: IPAddress, allow: Iterable[IPNetwork]) -> bool:
    address = _unmapped(address)
    return is_public(address) or any(address in network for network in allow)


def networks(cidrs: Iterable[str]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return sorted({str(info[4][0]) for info in infos})


@dataclass(frozen=True, slots=True)
class Pinned:
    """A request target bound to the address that was checked."""

    url: httpx.URL
    host_header: str
    sni_hostname: str | None


async def pin(url: str, allow: Iterable[IPNetwork], resolve: Resolver = system_resolver) -> Pinned:
    """Resolve the URL's host, refuse it unless every address is allowed, and bind the URL to the first.

    Every address must pass: a client would try the others if the first failed, and a resolver that
    mixes a public and a private answer is an attack, not a configuration."""
    parsed = httpx.URL(url)
    host = parsed.host
    if not host or parsed.scheme not in ("http", "https"):
        raise TargetRefused("not an http(s) URL with a host")
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        addresses = [literal]
    else:
        try:
            addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in await resolve(host, port)]
        except (OSError, ValueError) as exc:
            raise TargetRefused("host does not resolve") from exc
    allow = tuple(allow)
    if not addresses or not all(allowed(a, allow) for a in addresses):
        raise TargetRefused("address not allowed")
    ip = _unmapped(addresses[0])
    host_header = parsed.netloc.decode("ascii").rsplit("@", 1)[-1]
    return Pinned(
        url=parsed.copy_with(host=str(ip)),
        host_header=host_header,
        sni_hostname=None if literal is not None else host,
    )
