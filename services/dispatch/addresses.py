"""Webhook SSRF protection: which addresses a webhook may reach, checked at creation and send."""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_RESOLVED_SECONDS = 10.0


class RefusedAddress(Exception):
    """The webhook's host resolves to an address it may not reach; the message says which."""


def refusal(address: IPAddress, allowed: Sequence[IPNetwork]) -> str | None:
    """Why a webhook may not reach `address`, or None when it may.

    Only public unicast addresses pass, unless an allowed network contains the address. An
    IPv4-mapped IPv6 address (::ffff:127.0.0.1) is judged as the IPv4 address it carries.
    """
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if any(address.version == network.version and address in network for network in allowed):
        return None
    for kind, flagged in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("private", address.is_private),
        ("reserved", address.is_reserved),
        ("not public", not address.is_global),
    ):
        if flagged:
            return (
                f"{address} is a {kind} address" if kind != "not public" else f"{address} is {kind}"
            )
    return None


@dataclass(frozen=True)
class _Resolved:
    addresses: tuple[IPAddress, ...]
    at: float


class WebhookResolver:
    """Resolves webhook hosts and refuses non-public answers; answers are cached a few seconds."""

    def __init__(self, allowed: Sequence[IPNetwork]) -> None:
        self._allowed = tuple(allowed)
        self._cache: dict[tuple[str, int], _Resolved] = {}

    async def checked_address(self, host: str, port: int) -> IPAddress:
        """One address of `host` to connect to; RefusedAddress if any of its addresses is refused.

        Every address must pass: a host answering one public and one private address could
        otherwise be steered to the private one (DNS rebinding).
        """
        addresses = await self._resolve(host, port)
        for address in addresses:
            reason = refusal(address, self._allowed)
            if reason is not None:
                raise RefusedAddress(f"webhook host {host!r} refused: {reason}")
        return addresses[0]

    async def _resolve(self, host: str, port: int) -> tuple[IPAddress, ...]:
        literal = _literal(host)
        if literal is not None:
            return (literal,)
        cached = self._cache.get((host, port))
        now = time.monotonic()
        if cached is not None and now - cached.at < _RESOLVED_SECONDS:
            return cached.addresses
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, port, type=socket.SOCK_STREAM
            )
        except (socket.gaierror, UnicodeError) as error:
            raise RefusedAddress(f"webhook host {host!r} does not resolve: {error}") from None
        addresses = tuple(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))
        if not addresses:
            raise RefusedAddress(f"webhook host {host!r} has no address")
        self._cache[(host, port)] = _Resolved(addresses, now)
        return addresses


def _literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]").split("%")[0])
    except ValueError:
        return None
