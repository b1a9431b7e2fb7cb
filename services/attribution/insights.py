"""Evidence-backed suggestions from the KPI rollups and touchpoints: a winning variant, a lagging
channel or send hour, caps that suppress too much. Pure functions; each insight states its
numbers and how sure it is."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

InsightKind = Literal[
    "variant_wins", "channel_underperforms", "hour_underperforms", "caps_suppress_too_much"
]
Metric = Literal["click", "conversion"]

_DRAWS = 4000
_SEED = 20250314


@dataclass(frozen=True)
class VariantStats:
    template_id: str
    variant_id: str
    sent: int
    clicked: int
    converted: float


@dataclass(frozen=True)
class ChannelStats:
    channel: str
    sent: int
    clicked: int
    suppressed: int
    suppressed_frequency_cap: int
    failed: int


@dataclass(frozen=True)
class HourStats:
    """Messages sent in one hour of the day (UTC), and how many of them were clicked."""

    hour: int
    sent: int
    clicked: int


@dataclass(frozen=True)
class Insight:
    kind: InsightKind
    message: str
    probability: float
    evidence: dict[str, Any] = field(default_factory=dict)


def winning_variants(
    variants: Sequence[VariantStats], *, min_trials: int, probability: float
) -> list[Insight]:
    """Per template and metric, the variant that is best with at least `probability`.

    Each variant's rate has a Beta(1 + successes, 1 + failures) posterior; the chance that a
    variant is the best is estimated by drawing from all posteriors with a fixed seed, so the
    same rollups always give the same answer.
    """
    found = []
    by_template: dict[str, list[VariantStats]] = {}
    for variant in variants:
        by_template.setdefault(variant.template_id, []).append(variant)
    for template_id, group in sorted(by_template.items()):
        if len(group) < 2 or any(v.sent < min_trials for v in group):
            continue
        for metric in ("click", "conversion"):
            insight = _winner(template_id, group, metric, probability)
            if insight is not None:
                found.append(insight)
    return found


def probability_best(trials: Sequence[tuple[float, float]], *, seed: int = _SEED) -> list[float]:
    """For (successes, trials) per arm, the chance each arm has the highest rate."""
    rng = random.Random(seed)
    wins = [0] * len(trials)
    posteriors = [(1 + s, 1 + max(n - s, 0)) for s, n in trials]
    for _ in range(_DRAWS):
        draws = [rng.betavariate(a, b) for a, b in posteriors]
        wins[max(range(len(draws)), key=draws.__getitem__)] += 1
    return [w / _DRAWS for w in wins]


def lagging_channels(
    channels: Sequence[ChannelStats], *, min_trials: int, confidence: float
) -> list[Insight]:
    """Channels whose click rate (clicks per send) is significantly below the other channels'.

    Sends are the trials because not every channel reports deliveries.
    """
    found = []
    for lag in _lagging([(c.channel, c.sent, c.clicked) for c in channels], min_trials, confidence):
        found.append(
            Insight(
                kind="channel_underperforms",
                message=f"Channel {lag.name!r} converts sends to clicks at "
                f"{lag.rate:.2%}, against {lag.rest_rate:.2%} on the other channels.",
                probability=lag.sure,
                evidence={"channel": lag.name, **lag.evidence()},
            )
        )
    return found


def lagging_hours(
    hours: Sequence[HourStats], *, min_trials: int, confidence: float
) -> list[Insight]:
    """Hours of the day (UTC, by when the message was sent) whose click rate is significantly
    below the other hours': a send time worth moving away from."""
    found = []
    for lag in _lagging(
        [(f"{h.hour:02d}:00", h.sent, h.clicked) for h in hours], min_trials, confidence
    ):
        found.append(
            Insight(
                kind="hour_underperforms",
                message=f"Messages sent at {lag.name} UTC are clicked at {lag.rate:.2%}, "
                f"against {lag.rest_rate:.2%} for the other hours.",
                probability=lag.sure,
                evidence={"hour_utc": int(lag.name[:2]), **lag.evidence()},
            )
        )
    return found


@dataclass(frozen=True)
class _Lag:
    name: str
    sent: int
    clicked: int
    rest_sent: int
    rest_clicked: int
    sure: float

    @property
    def rate(self) -> float:
        return self.clicked / self.sent

    @property
    def rest_rate(self) -> float:
        return self.rest_clicked / self.rest_sent

    def evidence(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "clicked": self.clicked,
            "click_rate": self.rate,
            "others_sent": self.rest_sent,
            "others_clicked": self.rest_clicked,
            "others_click_rate": self.rest_rate,
        }


def _lagging(
    groups: Sequence[tuple[str, int, int]], min_trials: int, confidence: float
) -> list[_Lag]:
    """The (name, sent, clicked) groups whose click rate is below the pooled rest's with at
    least `confidence`: a one-sided two-proportion z-test."""
    found = []
    for name, sent, clicked in groups:
        rest = [(s, c) for n, s, c in groups if n != name]
        rest_sent = sum(s for s, _ in rest)
        rest_clicked = sum(min(c, s) for s, c in rest)
        if sent < min_trials or rest_sent < min_trials:
            continue
        clicked = min(clicked, sent)
        sure = _confidence_below(clicked, sent, rest_clicked, rest_sent)
        if sure >= confidence:
            found.append(_Lag(name, sent, clicked, rest_sent, rest_clicked, sure))
    return found


def suppressing_caps(
    channels: Sequence[ChannelStats], *, min_trials: int, max_share: float
) -> list[Insight]:
    """Channels where frequency caps suppress more than `max_share` of the messages asked for."""
    found = []
    for channel in channels:
        attempted = channel.sent + channel.suppressed + channel.failed
        if attempted < min_trials:
            continue
        share = channel.suppressed_frequency_cap / attempted
        if share <= max_share:
            continue
        found.append(
            Insight(
                kind="caps_suppress_too_much",
                message=f"Frequency caps suppressed {share:.1%} of the {attempted} messages "
                f"for channel {channel.channel!r} (threshold {max_share:.0%}).",
                probability=1.0,
                evidence={
                    "channel": channel.channel,
                    "attempted": attempted,
                    "suppressed_frequency_cap": channel.suppressed_frequency_cap,
                    "suppressed_share": share,
                    "threshold": max_share,
                },
            )
        )
    return found


def _winner(
    template_id: str, group: Sequence[VariantStats], metric: Metric, probability: float
) -> Insight | None:
    successes = [float(v.clicked) if metric == "click" else v.converted for v in group]
    arms = [(min(s, v.sent), float(v.sent)) for s, v in zip(successes, group, strict=True)]
    chances = probability_best(arms)
    best = max(range(len(group)), key=chances.__getitem__)
    if chances[best] < probability:
        return None
    winner = group[best]
    rates = {v.variant_id: s / v.sent for (s, _), v in zip(arms, group, strict=True)}
    return Insight(
        kind="variant_wins",
        message=f"Variant {winner.variant_id!r} of template {template_id!r} has the best "
        f"{metric} rate ({rates[winner.variant_id]:.2%}) with probability {chances[best]:.1%}.",
        probability=chances[best],
        evidence={
            "template_id": template_id,
            "variant_id": winner.variant_id,
            "metric": metric,
            "variants": [
                {
                    "variant_id": v.variant_id,
                    "sent": v.sent,
                    "successes": s,
                    "rate": rates[v.variant_id],
                    "probability_best": chance,
                }
                for (s, _), v, chance in zip(arms, group, chances, strict=True)
            ],
        },
    )


def _confidence_below(clicked: int, sent: int, rest_clicked: int, rest_sent: int) -> float:
    """One-sided confidence that the first rate is below the second (normal approximation)."""
    pooled = (clicked + rest_clicked) / (sent + rest_sent)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / sent + 1 / rest_sent))
    if spread == 0:
        return 0.0
    z = (clicked / sent - rest_clicked / rest_sent) / spread
    return 0.5 * math.erfc(z / math.sqrt(2))
