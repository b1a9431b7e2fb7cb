"""`free_port`: ports for things that will listen soon, never handed out twice by a process and
kept clear of the ports the kernel gives outgoing connections."""

from __future__ import annotations

from libs.devstack._process import _ephemeral_low, free_port, port_is_free


def test_no_port_is_handed_out_twice() -> None:
    ports = [free_port() for _ in range(500)]
    assert len(set(ports)) == len(ports)
    assert all(port_is_free(port) for port in ports[-20:])


def test_ports_come_from_below_the_range_of_outgoing_connections() -> None:
    below = _ephemeral_low()
    ports = [free_port() for _ in range(50)]
    if below > 10_000:  # the kernel's range is readable and leaves room beneath it
        assert all(10_000 <= port < below for port in ports)
    else:
        assert all(0 < port < 65_536 for port in ports)
