"""Prometheus metrics every service exports: HTTP RED, the bus, the outbox and the DLQ.

Names carry their unit and counters end in `_total`, so a dashboard reads them without a legend.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "closeloop_http_requests_total",
    "HTTP requests answered, by route and status code.",
    ["service", "method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "closeloop_http_request_duration_seconds",
    "Time to answer an HTTP request.",
    ["service", "method", "route"],
    buckets=_LATENCY_BUCKETS,
)
EVENTS_CONSUMED = Counter(
    "closeloop_events_consumed_total",
    "Events a consumer handled and committed (duplicates excluded).",
    ["group", "topic", "type"],
)
EVENTS_DUPLICATE = Counter(
    "closeloop_events_duplicate_total",
    "Events skipped because the inbox had already handled their id.",
    ["group", "topic"],
)
EVENTS_FAILED = Counter(
    "closeloop_events_failed_total",
    "Events that failed to decode or to be handled, by reason (invalid, handler).",
    ["group", "topic", "reason"],
)
EVENTS_PRODUCED = Counter(
    "closeloop_events_produced_total",
    "Events published to Kafka and acknowledged by it.",
    ["topic", "type"],
)
DLQ_EVENTS = Counter(
    "closeloop_dlq_events_total",
    "Messages sent to the dead-letter topic.",
    ["group", "topic"],
)
HANDLER_DURATION = Histogram(
    "closeloop_handler_duration_seconds",
    "Time to handle one batch: decode, transaction, offset commit.",
    ["group"],
    buckets=_LATENCY_BUCKETS,
)
BATCH_SIZE = Histogram(
    "closeloop_consumer_batch_size_events",
    "Events per consumed batch.",
    ["group"],
    buckets=(1, 5, 10, 50, 100, 250, 500, 1000, 2000),
)
CONSUMER_LAG = Gauge(
    "closeloop_consumer_lag_messages",
    "Messages between a partition's end and the consumer's position.",
    ["group", "topic", "partition"],
)
OUTBOX_BACKLOG = Gauge(
    "closeloop_outbox_backlog_events",
    "Events written to the outbox and not yet published.",
    ["service"],
)
RETENTION_DELETED = Counter(
    "closeloop_retention_deleted_rows_total",
    "Rows deleted because they outlived their retention period, by kind (inbox, behaviours...).",
    ["service", "kind"],
)
RETENTION_FAILURES = Counter(
    "closeloop_retention_failures_total",
    "Retention passes over a kind that failed (tried again at the next pass).",
    ["service", "kind"],
)
CONSUMER_RESTARTS = Counter(
    "closeloop_consumer_restarts_total",
    "Kafka consumers replaced because their background fetching died.",
    ["group"],
)
PRODUCER_RESTARTS = Counter(
    "closeloop_producer_restarts_total",
    "Kafka producers replaced because their background sender died.",
)
BATCH_RETRIES = Counter(
    "closeloop_consumer_batch_retries_total",
    "Batches retried after a failure (dependency down or transient error).",
    ["group"],
)
LOOP_LATENCY = Histogram(
    "closeloop_loop_latency_seconds",
    "Time from the behaviour that caused a message to the message being sent.",
    ["channel"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
)
