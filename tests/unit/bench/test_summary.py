"""The combined benchmark's table, verdicts and comparison: pure helpers, no stack."""

from __future__ import annotations

import json
from pathlib import Path

from bench.summary import Figure, Target, compare, document, load, save, table


def test_value_target_is_met_at_its_bound() -> None:
    figure = Figure("profile", "events", 20_000, "events/s", targets=(Target(20_000),))
    assert figure.met is True


def test_ratio_target_uses_the_ceiling() -> None:
    figure = Figure("bus", "consume", 40, "events/s", "raw", 100, (Target(0.5, on="ratio"),))
    assert figure.ratio == 0.4
    assert figure.met is False


def test_every_target_must_be_met() -> None:
    targets = (Target(50_000), Target(0.5, on="ratio"))
    figure = Figure("ingest", "batch", 9_000, "events/s", "raw produce", 10_000, targets)
    assert figure.met is False


def test_at_most_target_for_latency() -> None:
    assert Figure("loop", "p99", 120, "ms", targets=(Target(250, at_most=True),)).met is True
    assert Figure("loop", "p99", 250, "ms", targets=(Target(250, at_most=True),)).met is False


def test_ratio_target_without_a_ceiling_has_no_verdict() -> None:
    assert Figure("x", "y", 1, "/s", targets=(Target(0.5, on="ratio"),)).met is None


def test_table_has_one_row_per_figure_with_its_verdict() -> None:
    figures = [
        Figure("bus", "consume", 40, "events/s", "raw", 100, (Target(0.5, on="ratio"),)),
        Figure("memory", "ingest RSS idle", 81.5, "MB"),
    ]
    lines = table(figures).splitlines()
    assert len(lines) == 4
    assert lines[2].endswith("NOT met")
    assert lines[3].split()[-2:] == ["81.5", "MB"]


def test_saved_runs_compare_figure_by_figure(tmp_path: Path) -> None:
    before = document([Figure("bus", "consume", 100, "events/s")], {})
    after = document(
        [Figure("bus", "consume", 150, "events/s"), Figure("loop", "p99", 90, "ms")], {}
    )
    latest, kept = save(after, tmp_path)
    assert load(latest) == load(kept) == json.loads(json.dumps(after))
    compared = compare(before, after)
    assert "+50.0%" in compared
    assert "(new)" in compared


def test_unmeasurable_values_are_null_in_json() -> None:
    content = document([Figure("loop", "p99", float("nan"), "ms")], {})
    assert content["figures"][0]["value"] is None


def test_an_at_most_or_equal_target_is_met_at_its_bound_and_says_so() -> None:
    target = Target(12, at_most=True, or_equal=True)
    assert Figure("loop", "decoded", 12, "/track", targets=(target,)).met is True
    assert Figure("loop", "decoded", 12.01, "/track", targets=(target,)).met is False
    assert target.describe("/track") == "≤ 12.0 /track"
