"""`python -m bench loop-compare`'s arithmetic: each side's min and median over alternated
runs, and the after/before ratio of the medians."""

from __future__ import annotations

from typing import Any

import pytest

from bench.alternate import Compared, compared, table


def _figure(name: str, value: float | None, *targets: str) -> dict[str, Any]:
    return {
        "scenario": "loop (500/s offered)",
        "name": name,
        "value": value,
        "unit": "ms",
        "targets": list(targets),
    }


def test_each_side_has_its_min_and_median_and_the_ratio_is_of_the_medians() -> None:
    before = [
        [_figure("latency p99", 400.0, "< 250 ms")],
        [_figure("latency p99", 300.0)],
        [_figure("latency p99", 1000.0)],
    ]
    after = [[_figure("latency p99", 200.0)], [_figure("latency p99", 100.0)]]
    (row,) = compared(before, after)
    assert row.figure == "loop (500/s offered): latency p99"
    assert (row.before_min, row.before_median) == (300.0, 400.0)
    assert (row.after_min, row.after_median) == (100.0, 150.0)
    assert row.ratio == pytest.approx(0.375)
    assert row.targets == "< 250 ms"


def test_an_unmeasured_value_is_left_out_and_a_figure_of_one_side_has_no_ratio() -> None:
    before = [[_figure("latency p99", None), _figure("gone", 5.0)], [_figure("latency p99", 8.0)]]
    after = [[_figure("latency p99", 4.0), _figure("new", 1.0)]]
    rows = {row.figure.split(": ")[1]: row for row in compared(before, after)}
    assert list(rows) == ["latency p99", "new", "gone"]
    assert rows["latency p99"].before == (8.0,)
    assert rows["latency p99"].ratio == 0.5
    assert rows["new"].ratio is None and rows["gone"].ratio is None


def test_a_zero_before_has_no_ratio() -> None:
    assert Compared("x", "ms", (0.0,), (1.0,)).ratio is None


def test_the_table_shows_both_sides_and_the_ratio() -> None:
    rows = [Compared("loop: latency p99", "ms", (400.0, 300.0), (200.0, 100.0), "< 250 ms")]
    header, rule, line = table(rows, "abc123", "def456").splitlines()
    assert "abc123 median" in header and "after/before" in header
    assert set(rule) <= {"-", " "}
    assert line.split()[-8:] == ["300", "350", "100", "150", "0.429", "<", "250", "ms"]
