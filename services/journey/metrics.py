"""The journey service's own metrics (the bus, HTTP and outbox ones come from libs.common)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

# journey_id as a label: a tenant runs tens of journeys, not thousands, so cardinality holds.
ENTRIES = Counter(
    "closeloop_journey_entries_total", "Profiles that entered a journey.", ["journey_id"]
)
EXITS = Counter(
    "closeloop_journey_exits_total",
    "Runs that left a journey early, by reason (exit_node, exit_condition, segment_exited, "
    "goal, step_limit).",
    ["journey_id", "reason"],
)
SENDS = Counter(
    "closeloop_journey_sends_total",
    "message.requested events a journey emitted.",
    ["journey_id", "channel"],
)
TIMERS_DUE = Counter("closeloop_journey_timers_due_total", "Due timers the timer worker claimed.")
TIMERS_FIRED = Counter(
    "closeloop_journey_timers_fired_total",
    "Timers that moved their run on (claimed timers whose profile was busy wait for the next "
    "poll).",
)
TIMER_LATENESS = Histogram(
    "closeloop_journey_timer_lateness_seconds",
    "How long after its due time a timer fired.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
