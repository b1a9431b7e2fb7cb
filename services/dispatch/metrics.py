"""The dispatch service's Prometheus metrics (the loop latency is libs.common's)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SENDS = Counter(
    "closeloop_dispatch_sends_total",
    "Sends by channel and outcome: sent, retry, failed, suppressed, deferred, taken_over (left "
    "to the sender that took the row over).",
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
ARBITRATIONS = Counter(
    "closeloop_dispatch_arbitration_losses_total",
    "Marketing messages that lost their person's cap to a message of higher priority (or as "
    "high and asked for earlier) decided with them, by what became of them: dropped, deferred.",
    ["outcome"],
)
HELD = Counter(
    "closeloop_dispatch_held_messages_total",
    "Marketing messages held for the policy's arbitration window when they reached the ledger.",
)
LEDGER_BACKLOG = Gauge(
    "closeloop_dispatch_ledger_backlog_messages",
    "Ledger rows waiting to be sent or being sent (deferred ones included).",
)
MAX_IN_FLIGHT = Gauge(
    "closeloop_dispatch_max_in_flight_sends",
    "Provider calls this process may have in flight: the most sends its crash leaves uncertain.",
)
IN_FLIGHT = Gauge(
    "closeloop_dispatch_in_flight_sends",
    "Provider calls in flight now: attempted, result not yet recorded.",
)
TAKEN_OVER = Counter(
    "closeloop_dispatch_taken_over_sends_total",
    "Ledger rows claimed from a sender whose heartbeat stopped.",
)
UNCERTAIN_SENDS = Counter(
    "closeloop_dispatch_uncertain_sends_total",
    "Taken-over sends whose call had started and whose result was never recorded, by channel "
    "and what the channel's policy did: resend or give_up.",
    ["channel", "policy"],
)
JOURNAL_ROUND_SECONDS = Histogram(
    "closeloop_dispatch_journal_round_seconds",
    "Time one send-journal round took to commit (its attempts and results together).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
JOURNAL_ROUND_ENTRIES = Histogram(
    "closeloop_dispatch_journal_round_entries",
    "Attempts and results one send-journal round committed.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
)
