"""Credit per channel, journey, node or variant over a time range under any model: the five
rule models, or the Markov chain fitted on the range's paths. Pure functions.

Every model credits the same touches (a conversion's converting path) and only the split
differs, so the models can be compared conversion for conversion. Under `markov` the split is
by channel weights fitted on the range's converting paths, so that each channel's credit summed
over the conversions is the credited conversions times its removal share.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Literal

from libs.common.events.conversion import AttributionModel
from services.attribution import credit, markov
from services.attribution.campaigns import CampaignTouch
from services.attribution.markov import CreditWeights, MarkovResult, StateEffect
from services.attribution.paths import (
    Conversion,
    ConvertingPath,
    CreditRule,
    RangePaths,
    Span,
    Touchpoint,
    range_paths,
)
from services.attribution.store import DIMENSION_COLUMNS, Dimension

CreditModel = Literal[AttributionModel, "markov"]


@dataclass(frozen=True)
class CreditRow:
    """One value of the dimension (None for campaign visits, which have no message lineage)."""

    key: dict[str, str | None]
    conversions: float
    revenue: dict[str, Decimal]
    effect: StateEffect | None
    """The channel's removal effect; only when the report is by channel."""


@dataclass(frozen=True)
class CreditReport:
    model: CreditModel
    by: Dimension
    lookback: timedelta
    conversions: int
    attributed: int
    null_paths: int
    chain: MarkovResult
    rows: list[CreditRow]
    calibration: CreditWeights | None = None
    """Under `markov`: the channel weights each conversion was split by, and how far the
    channels' summed credits remain from their targets (`residual`); None under rule models."""


def over_range(
    model: CreditModel,
    by: Dimension,
    span: Span,
    rules: Mapping[str, CreditRule],
    message_touches: Iterable[tuple[str, Touchpoint]],
    campaign_touches: Iterable[CampaignTouch],
    conversions: Iterable[Conversion],
) -> CreditReport:
    """The report from the rows read for `span` (`paths.range_paths`), with the chain fitted
    on the range's paths."""
    paths = range_paths(span, rules, message_touches, campaign_touches, conversions)
    return report(model, by, paths, rules, fit(paths))


def fit(paths: RangePaths) -> MarkovResult:
    """The channel chain of the range's converting and null paths."""
    return markov.removal_effects(
        [markov.Path(_channels(path.touches), True) for path in paths.converting]
        + [markov.Path(_channels(run), False) for run in paths.null]
    )


def calibrate(paths: RangePaths, chain: MarkovResult) -> CreditWeights:
    """The channel weights that split the range's conversions so that each channel's summed
    credit is the credited conversions times its removal share (`markov.credit_weights`)."""
    shares = {effect.state: effect.share for effect in chain.effects}
    return markov.credit_weights([_channels(path.touches) for path in paths.converting], shares)


def touch_shares(
    model: CreditModel, path: ConvertingPath, rule: CreditRule, weights: Mapping[str, float]
) -> list[float]:
    """Each touch's share of the path's conversion under `model`; `weights` are the channel
    weights of `calibrate`, which only `markov` uses."""
    if model == "markov":
        return markov.shares(_channels(path.touches), weights)
    ages = [path.conversion.occurred_at - touch.occurred_at for touch in path.touches]
    return credit.shares(model, ages, half_life=rule.half_life)


def report(
    model: CreditModel,
    by: Dimension,
    paths: RangePaths,
    rules: Mapping[str, CreditRule],
    chain: MarkovResult,
) -> CreditReport:
    """The conversions and value each value of `by` earned, rows by most conversions first;
    by channel, every channel of the chain has a row, with its removal effect."""
    columns = DIMENSION_COLUMNS[by]
    tally = _Tally()
    if by == "channel":
        tally.earned |= {(effect.state,): 0.0 for effect in chain.effects}
    # Fitted on every converting path of the range, whatever `by`: the weights are per channel.
    calibration = calibrate(paths, chain) if model == "markov" else None
    weights = calibration.weights if calibration else {}
    for path in paths.converting:
        shares = touch_shares(model, path, rules[path.conversion.definition_id], weights)
        for touch, share in zip(path.touches, shares, strict=True):
            tally.add(tuple(getattr(touch, column) for column in columns), share, path.conversion)
    rows = [
        CreditRow(
            dict(zip(columns, key, strict=True)),
            conversions,
            tally.revenue.get(key, {}),
            chain.effect_of(str(key[0])) if by == "channel" else None,
        )
        for key, conversions in sorted(tally.earned.items(), key=_most_first)
    ]
    return CreditReport(
        model=model,
        by=by,
        lookback=paths.lookback,
        conversions=len(paths.converting),
        attributed=sum(1 for path in paths.converting if path.touches),
        null_paths=len(paths.null),
        chain=chain,
        rows=rows,
        calibration=calibration,
    )


_Key = tuple[str | None, ...]


@dataclass
class _Tally:
    """Credited conversions and value per key."""

    earned: dict[_Key, float] = field(default_factory=dict)
    revenue: dict[_Key, dict[str, Decimal]] = field(default_factory=dict)

    def add(self, key: _Key, share: float, conversion: Conversion) -> None:
        self.earned[key] = self.earned.get(key, 0.0) + share
        if conversion.value is None or conversion.currency is None:
            return
        amounts = self.revenue.setdefault(key, {})
        part = conversion.value * Decimal(repr(share))
        amounts[conversion.currency] = amounts.get(conversion.currency, Decimal(0)) + part


def _channels(touches: Sequence[Touchpoint]) -> tuple[str, ...]:
    return tuple(touch.channel for touch in touches)


def _most_first(
    item: tuple[_Key, float],
) -> tuple[float, tuple[tuple[bool, str], ...]]:
    """Most conversions first; among equals by key, campaign visits (None) last."""
    key, conversions = item
    return -conversions, tuple((part is None, part or "") for part in key)
