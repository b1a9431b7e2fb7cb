"""`free_port`: ports for things that will listen soon, never handed out twice by a process and
kept clear of the ports the kernel gives outgoing connections."""

from __future__ import annotations

import socket

import pytest

from libs.devstack._process import LOOPBACK, _ephemeral_low, free_port, port_is_free


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


def test_a_port_whose_connection_lingers_in_time_wait_is_free() -> None:
    port = free_port()
    with socket.create_server((LOOPBACK, port)) as listener:
        client = socket.create_connection((LOOPBACK, port))
        accepted, _ = listener.accept()
        # The side that closes first keeps the connection in TIME_WAIT, on the listening port.
        accepted.close()
        assert client.recv(1) == b""
        client.close()
    assert _plain_bind_fails(port), "the connection did not linger in TIME_WAIT"

    assert port_is_free(port)


@pytest.mark.parametrize("reuse_address", [True, False])
def test_a_port_with_a_listener_is_in_use(reuse_address: bool) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, int(reuse_address))
        listener.bind((LOOPBACK, free_port()))
        listener.listen()

        assert not port_is_free(listener.getsockname()[1])


def _plain_bind_fails(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return True
        return False
