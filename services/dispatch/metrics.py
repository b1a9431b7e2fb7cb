"""The dispatch service's Prometheus metrics (the loop latency is libs.common's)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SENDS = Counter(
    "closeloop_dispatch_sends_total",
    "Sends by channel and outcome: sent, retry, failed, suppressed, deferred.",
    ["channel", "outcome"],
)
PROVIDER_LATENCY = Histogram(
    "closeloop_dispatch_provider_latency_seconds",
    "Time a provider took to answer one send.",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
SUPPRESSIONS = Counter(
    "closeloop_dispatch_suppressions_total",
    "Messages not sent, by reason: consent, unsubscribed, frequency_cap.",
    ["reason"],
)
LEDGER_BACKLOG = Gauge(
    "closeloop_dispatch_ledger_backlog_messages",
    "Ledger rows waiting to be sent or being sent (deferred ones included).",
)
