"""The content service's own metrics (beside libs.common.metrics): renders, variants, holdouts."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RENDERS = Counter(
    "closeloop_content_renders_total",
    "Requests answered, by channel and outcome (rendered, holdout, undeliverable, failed).",
    ["channel", "outcome"],
)
RENDER_DURATION = Histogram(
    "closeloop_content_render_duration_seconds",
    "Time to render one message in the sandbox, links included (a batch's share each).",
    ["channel"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
VARIANT_PICKS = Counter(
    "closeloop_content_variant_picks_total",
    "Variants the bandit picked for a message.",
    ["template_id", "variant_id"],
)
HOLDOUTS = Counter(
    "closeloop_content_holdouts_total",
    "Requests held out: no message was sent, as a baseline.",
    ["template_id"],
)
MISSING_VARIABLES = Counter(
    "closeloop_content_missing_variables_total",
    "Variables missing at send time, by fallback: the declared `default`, or `empty`.",
    ["template_id", "fallback"],
)
BANDIT_UPDATES = Counter(
    "closeloop_content_bandit_updates_total",
    "Evidence the bandit counted, by kind (trial, click, conversion).",
    ["kind"],
)
COPY_SUGGESTIONS = Counter(
    "closeloop_content_copy_suggestions_total",
    "Copy suggestion requests answered, by source (llm, offline).",
    ["source"],
)
