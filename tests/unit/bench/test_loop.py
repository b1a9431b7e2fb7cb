"""The loop benchmark's reading of each service's /metrics."""

from __future__ import annotations

from bench.loop import _metric_sum

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
