"""The bus scenario's arithmetic: its ratios and what it spends beyond the stack's floor."""

from __future__ import annotations

import pytest

from bench.bus import FLOOR, beyond_the_floor, ratios
from bench.report import Rate


def _rates(consume: float, inserts: float, floor: float, bus: float) -> list[Rate]:
    """One second of each, at the given rates (produce and relay at 100,000/s)."""
    return [
        Rate("produce", 100_000, 1.0),
        Rate("consume", int(consume), 1.0),
        Rate("inserts", int(inserts), 1.0),
        Rate(FLOOR, int(floor), 1.0),
        Rate("bus", int(bus), 1.0),
        Rate("relay", 100_000, 1.0),
    ]


def test_what_the_bus_spends_beyond_the_floor_and_what_the_target_leaves() -> None:
    # The floor takes 10 µs an event; the bus 25; half of the slower ceiling (200,000/s)
    # allows 10 µs in all, which leaves nothing beyond the floor.
    spent, budget = beyond_the_floor(_rates(250_000, 200_000, 100_000, 40_000))
    assert spent == pytest.approx(15.0)
    assert budget == pytest.approx(0.0)


def test_a_floor_slower_than_the_target_leaves_a_negative_budget() -> None:
    _, budget = beyond_the_floor(_rates(200_000, 200_000, 80_000, 40_000))
    assert budget == pytest.approx(10.0 - 12.5)


def test_ratios_compare_bus_and_floor_with_the_slower_ceiling() -> None:
    bus, floor, relay = ratios(_rates(250_000, 200_000, 100_000, 40_000))
    assert bus.value == pytest.approx(0.2)
    assert not bus.met
    assert floor.value == pytest.approx(0.5)
    assert floor.met
    assert relay.value == pytest.approx(1.0)
