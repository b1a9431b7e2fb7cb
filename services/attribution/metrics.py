"""The attribution service's own Prometheus metrics (units in the names, counters end `_total`)."""

from __future__ import annotations

from prometheus_client import Counter

CONVERSIONS = Counter(
    "closeloop_attribution_conversions_total",
    "Conversions handled, by definition name and whether a touchpoint was credited.",
    ["conversion", "result"],
)
CREDITS = Counter(
    "closeloop_attribution_credits_total",
    "conversion.attributed events emitted (one per credited message), by attribution model.",
    ["model"],
)
REVENUE = Counter(
    "closeloop_attribution_revenue_attributed_total",
    "Credited conversion value, in units of the currency, by currency.",
    ["currency"],
)
TOUCHPOINTS = Counter(
    "closeloop_attribution_touchpoints_total",
    "Message outcomes recorded for the first time, by outcome type.",
    ["outcome"],
)
