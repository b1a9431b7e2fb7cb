"""The touch paths of a time range, which the credit models share conversions over and the
Markov chain is fitted on. Pure functions.

A converting path is a conversion's touchpoints: the distinct messages and campaign visits of
its definition's touch types within its window (`credit.touches_in_window`). A touch in no
converting path is unconverted; a profile's unconverted touches, in time order, form null
paths, a new one starting wherever more than the lookback (the longest window in the report)
passes between two of them. A path belongs to the range in which it was decided: a converting
path when its conversion happened, a null path when the lookback after its last touch ran out
without a conversion. Paths still open at the range's end are left out, so a report over a
past range does not count as lost the people about to convert.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from services.attribution.campaigns import CAMPAIGN_VISIT, CampaignTouch, visits
from services.attribution.credit import touches_in_window
from services.attribution.definitions import ConversionDefinition

DEFAULT_LOOKBACK = timedelta(days=7)
"""The lookback when no definition is in the report: the definitions' default window."""


@dataclass(frozen=True)
class Touchpoint:
    """One outcome of a message, or a campaign visit (then `message_id` is the behaviour's id
    and the message lineage is None)."""

    message_id: str
    occurred_at: datetime
    outcome: str
    channel: str
    journey_id: str | None = None
    node_id: str | None = None
    template_id: str | None = None
    variant_id: str | None = None


@dataclass(frozen=True)
class Conversion:
    conversion_id: str
    definition_id: str
    profile_id: str
    occurred_at: datetime
    value: Decimal | None = None
    currency: str | None = None


@dataclass(frozen=True)
class CreditRule:
    """What a definition says about its credit: window, touch types, time-decay half-life."""

    window: timedelta
    touch_types: frozenset[str]
    half_life: timedelta

    @classmethod
    def of(cls, definition: ConversionDefinition) -> CreditRule:
        """A definition's rule; campaign visits are touches for every definition."""
        touch_types = frozenset({*definition.touch_types, CAMPAIGN_VISIT})
        return cls(definition.window, touch_types, definition.half_life)


@dataclass(frozen=True)
class Span:
    """A report's time range, [start, end)."""

    start: datetime
    end: datetime

    def touches_read(self, lookback: timedelta) -> tuple[datetime, datetime]:
        """The touch times the paths need: a null path decided at the start may begin two
        lookbacks before it (its last touch one lookback before, its first one more)."""
        return self.start - 2 * lookback, self.end

    def conversions_read(self, lookback: timedelta) -> tuple[datetime, datetime]:
        """The conversion times that decide whether the touches read converted."""
        return self.start - 2 * lookback, self.end + lookback


@dataclass(frozen=True)
class ConvertingPath:
    conversion: Conversion
    touches: list[Touchpoint]


@dataclass(frozen=True)
class RangePaths:
    converting: list[ConvertingPath]
    null: list[list[Touchpoint]]
    lookback: timedelta


def lookback(rules: Iterable[CreditRule]) -> timedelta:
    return max((rule.window for rule in rules), default=DEFAULT_LOOKBACK)


def range_paths(
    span: Span,
    rules: Mapping[str, CreditRule],
    message_touches: Iterable[tuple[str, Touchpoint]],
    campaign_touches: Iterable[CampaignTouch],
    conversions: Iterable[Conversion],
) -> RangePaths:
    """The range's converting and null paths from the (profile id, touch) pairs, the campaign
    calls (one visit each after `campaigns.visits`) and the conversions read for `span`.

    Conversions of definitions without a rule are left out, and so are, as unconverted
    touches, outcomes of no rule's touch types.
    """
    touches = _by_profile(message_touches, campaign_touches)
    converted: dict[str, list[Conversion]] = {}
    for conversion in conversions:
        if conversion.definition_id in rules:
            converted.setdefault(conversion.profile_id, []).append(conversion)
    longest = lookback(rules.values())
    eligible = frozenset().union(*(rule.touch_types for rule in rules.values()))
    converting: list[ConvertingPath] = []
    null: list[list[Touchpoint]] = []
    for profile_id in sorted(touches.keys() | converted.keys()):
        own = touches.get(profile_id, [])
        paths = [_converting(c, own, rules[c.definition_id]) for c in converted.get(profile_id, [])]
        converting.extend(p for p in paths if span.start <= p.conversion.occurred_at < span.end)
        used = {touch.message_id for path in paths for touch in path.touches}
        unconverted = _firsts(t for t in own if t.outcome in eligible and t.message_id not in used)
        null.extend(
            run
            for run in _runs(unconverted, longest)
            if span.start <= run[-1].occurred_at + longest < span.end
        )
    converting.sort(key=lambda p: (p.conversion.occurred_at, p.conversion.conversion_id))
    return RangePaths(converting, null, longest)


def _by_profile(
    message_touches: Iterable[tuple[str, Touchpoint]], campaign_touches: Iterable[CampaignTouch]
) -> dict[str, list[Touchpoint]]:
    found: dict[str, list[Touchpoint]] = {}
    for profile_id, touch in message_touches:
        found.setdefault(profile_id, []).append(touch)
    for visit in visits(campaign_touches):
        found.setdefault(visit.profile_id, []).append(
            Touchpoint(visit.behaviour_id, visit.occurred_at, CAMPAIGN_VISIT, visit.channel)
        )
    return found


def _converting(
    conversion: Conversion, touches: Sequence[Touchpoint], rule: CreditRule
) -> ConvertingPath:
    eligible = [touch for touch in touches if touch.outcome in rule.touch_types]
    return ConvertingPath(
        conversion, touches_in_window(eligible, conversion.occurred_at, rule.window)
    )


def _firsts(touches: Iterable[Touchpoint]) -> list[Touchpoint]:
    """Each message once, at its first outcome, in time order."""
    first: dict[str, Touchpoint] = {}
    for touch in sorted(touches, key=_time_order):
        first.setdefault(touch.message_id, touch)
    return sorted(first.values(), key=_time_order)


def _runs(touches: Iterable[Touchpoint], gap: timedelta) -> list[list[Touchpoint]]:
    """Touches in time order cut wherever more than `gap` passes between two."""
    runs: list[list[Touchpoint]] = []
    for touch in touches:
        if runs and touch.occurred_at - runs[-1][-1].occurred_at <= gap:
            runs[-1].append(touch)
        else:
            runs.append([touch])
    return runs


def _time_order(touch: Touchpoint) -> tuple[datetime, str]:
    return touch.occurred_at, touch.message_id
