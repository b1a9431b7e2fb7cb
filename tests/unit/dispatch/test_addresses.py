"""Webhook SSRF protection: which addresses are refused, and the allow-list."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from services.dispatch.addresses import RefusedAddress, WebhookResolver, refusal

REFUSED = [
    "127.0.0.1",
    "127.255.0.9",
    "0.0.0.0",
    "10.1.2.3",
    "172.16.0.1",
    "192.168.1.1",
    "169.254.169.254",
    "100.64.0.1",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "192.0.2.10",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd12:3456::1",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "2001:db8::1",
]
ALLOWED = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), []) is not None


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address), []) is None


def test_allowed_networks_let_their_addresses_through_and_no_others() -> None:
    allowed = [ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("fd00::/8")]
    assert refusal(ipaddress.ip_address("127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("::ffff:127.0.0.1"), allowed) is None
    assert refusal(ipaddress.ip_address("fd12::1"), allowed) is None
    assert refusal(ipaddress.ip_address("10.0.0.1"), allowed) is not None
    assert refusal(ipaddress.ip_address("::1"), allowed) is not None


def test_resolver_refuses_a_host_naming_loopback() -> None:
    resolver = WebhookResolver([])
    with pytest.raises(RefusedAddress, match="loopback"):
        asyncio.run(resolver.checked_address("localhost", 80))
    with pytest.raises(RefusedAddress, match="loopback"):
        asyncio.run(resolver.checked_address("[::1]", 80))
    allowed = WebhookResolver([ipaddress.ip_network("127.0.0.0/8")])
    assert str(asyncio.run(allowed.checked_address("127.0.0.1", 80))) == "127.0.0.1"
