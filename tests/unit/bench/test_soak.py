"""The soak's verdict: a series is flat when its fitted growth over the second half is small."""

from __future__ import annotations

import pytest

from bench.soak import Point, Trend, trends, verdict

MB = 1024 * 1024


def _series(kind: str, name: str, values: list[float]) -> list[Point]:
    return [Point(10.0 * index, kind, name, value) for index, value in enumerate(values)]


def test_a_table_that_levels_off_after_the_warm_up_is_flat() -> None:
    # Grows through the warm-up, then holds at 50 MB give or take a little.
    values = [i * 10 * MB for i in range(6)] + [50 * MB + (i % 2) * 0.3 * MB for i in range(6)]
    (trend,) = trends(_series("table_bytes", "segment.behaviours", values))
    assert trend.flat


def test_a_table_still_growing_in_the_second_half_is_not() -> None:
    (trend,) = trends(_series("table_bytes", "segment.behaviours", [i * MB for i in range(12)]))
    assert not trend.flat
    assert trend.growth == pytest.approx(5 * MB)


def test_growth_under_the_floor_is_flat_however_small_the_series() -> None:
    (trend,) = trends(_series("lag_events", "journey", [0, 0, 0, 10, 200, 400]))
    assert trend.flat


def test_the_embedded_brokers_memory_may_grow_without_failing_the_verdict() -> None:
    broker = Trend("rss_bytes", "broker", mean=100 * MB, growth=50 * MB)
    segment = Trend("rss_bytes", "segment", mean=100 * MB, growth=50 * MB)
    assert verdict([broker])
    assert not verdict([broker, segment])
