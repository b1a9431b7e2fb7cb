"""The loop benchmark's reading of each service's /metrics, its phases and its targets."""

from __future__ import annotations

import pytest

from bench.loop import (
    DECODED_METRIC,
    MAX_SECONDS,
    QUICK_SECONDS,
    LoopLatency,
    _metric_sum,
    decoded_events,
    figures,
    per_track_lines,
    phase_seconds,
    quick,
    rates,
)

_EXPOSITION = """\
# HELP closeloop_consumer_batch_size_events Events per consumed batch.
# TYPE closeloop_consumer_batch_size_events histogram
closeloop_consumer_batch_size_events_bucket{group="closeloop-journey",le="1.0"} 2.0
closeloop_consumer_batch_size_events_count{group="closeloop-journey"} 7.0
closeloop_consumer_batch_size_events_sum{group="closeloop-journey"} 410.0
closeloop_consumer_batch_size_events_count{group="closeloop-journey-timers"} 3.0
closeloop_consumer_batch_size_events_sum{group="closeloop-journey-timers"} 12.0
"""


def test_a_metric_is_summed_over_its_labels_and_nothing_else() -> None:
    assert _metric_sum(_EXPOSITION, "closeloop_consumer_batch_size_events_count") == 10.0
    assert _metric_sum(_EXPOSITION, "closeloop_consumer_batch_size_events_sum") == 422.0


def test_a_metric_that_is_absent_sums_to_nothing() -> None:
    assert _metric_sum(_EXPOSITION, "closeloop_consumer_batch_size_events") == 0.0


# What a consumer's /metrics says today: the batch-size histogram counts every record polled,
# those skipped by their ce_type header included; the event counters count decoded events only.
_CONSUMER = """\
closeloop_consumer_batch_size_events_count{group="closeloop-segment"} 4.0
closeloop_consumer_batch_size_events_sum{group="closeloop-segment"} 100.0
closeloop_events_consumed_total{group="closeloop-segment",topic="t",type="profile.updated"} 20.0
closeloop_events_consumed_created{group="closeloop-segment",topic="t",type="profile.updated"} 1.7e9
closeloop_events_duplicate_total{group="closeloop-segment",topic="t"} 3.0
closeloop_events_failed_total{group="closeloop-segment",topic="t",reason="invalid"} 1.0
"""


def test_decoded_events_without_the_consumer_counter_are_the_events_counted_by_outcome() -> None:
    decoded, metric = decoded_events(_CONSUMER)
    assert decoded == 24.0  # not the histogram's 100 records, nor the _created timestamps
    assert metric == "consumed + duplicate + failed"


def test_decoded_events_from_the_consumer_counter_leave_the_skipped_out() -> None:
    exposition = _CONSUMER + (
        'closeloop_consumer_events_total{group="g",outcome="decoded"} 30.0\n'
        'closeloop_consumer_events_total{group="g",outcome="skipped"} 70.0\n'
        'closeloop_consumer_events_total{group="g2",outcome="decoded"} 5.0\n'
    )
    assert decoded_events(exposition) == (35.0, DECODED_METRIC)


def test_the_rates_and_phase_length_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("LOOP_RATES", "LOOP_RATE", "LOOP_SECONDS", "LOOP_WARM_UP_SECONDS"):
        monkeypatch.setenv(name, "")  # so that what `quick` sets is undone after the test
        monkeypatch.delenv(name)
    assert rates() == [500, 1000]
    assert phase_seconds(50_000, 500) == MAX_SECONDS
    assert phase_seconds(5_000, 500) == 10.0
    monkeypatch.setenv("LOOP_RATE", "100")
    assert rates() == [100]
    monkeypatch.setenv("LOOP_RATES", "200, 400")
    assert rates() == [200, 400]
    quick()
    assert phase_seconds(50_000, 500) == QUICK_SECONDS


def _phase(rate: int, p99_ms: float, machine_us: float, decoded: float) -> LoopLatency:
    return LoopLatency(
        f"loop {rate}",
        rate * 15,
        15.0,
        offered_per_second=rate,
        arrived=rate * 15,
        p99_ms=p99_ms,
        cpu_us_per_event={"ingest": 200.0, "profile": 300.0},
        shared_cpu_us_per_event={"broker": 100.0, "rest of the machine": 50.0},
        machine_cpu_us_per_event=machine_us,
        decoded_per_event={"profile": 1.0, "segment": decoded - 1.0},
        decoded_metric="consumed + duplicate + failed",
        consumed_per_event={"profile": 2.0, "segment": 9.0},
        events_per_batch={"profile": 10.0, "segment": 30.0},
    )


def test_each_target_is_on_the_phase_it_is_set_for() -> None:
    phases = [_phase(500, 200.0, 1_600.0, 12.0), _phase(1000, 900.0, 1_500.0, 13.0)]
    verdicts = {
        (figure.scenario, figure.name): figure.met
        for figure in figures(list(phases), None)  # type: ignore[arg-type]
        if figure.targets
    }
    assert verdicts == {
        ("loop (500/s offered)", "latency p99"): True,
        ("loop (500/s offered)", "events decoded, six consumers"): True,  # 12 is at most 12
        ("loop (1,000/s offered)", "events decoded, six consumers"): False,
        ("loop (1,000/s offered)", "CPU, whole machine"): True,  # 1,500 is at most 1,500
    }


def test_the_per_track_table_puts_the_sums_and_targets_beside_the_figures() -> None:
    lines = per_track_lines(_phase(1000, 900.0, 1_600.0, 11.0))
    services = next(line for line in lines if line.startswith("all seven services"))
    assert services.split()[3:6] == ["11.00", "11.00", "500"]
    assert services.endswith("target decoded ≤ 12.0 /track: met")
    assert lines[-2].startswith("whole machine")
    assert lines[-2].endswith("target ≤ 1,500 µs at 1,000/s: NOT met")
    assert "the loop's processes" in lines[-3] and lines[-3].split()[-1] == "600"
