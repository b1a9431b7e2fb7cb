"""The five rule-based attribution models: which touchpoints count, and each one's share.

Pure functions over touchpoints; the shares a model returns are positive and sum to 1.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol, TypeVar

from libs.common.events.conversion import AttributionModel

POSITION_ENDS_SHARE = 0.4
"""`position_based`: the first and the last touch earn 40 % each, the middle shares 20 %."""


@dataclass(frozen=True)
class Touch:
    """One message that reached the person, as the lineage the credit will carry."""

    message_id: str
    occurred_at: datetime
    channel: str
    journey_id: str
    journey_version: int
    node_id: str
    template_id: str
    variant_id: str | None


@dataclass(frozen=True)
class Credit:
    touch: Touch
    share: float


class Timed(Protocol):
    """A touch as the window sees it: what touched (a message), and when."""

    @property
    def message_id(self) -> str: ...

    @property
    def occurred_at(self) -> datetime: ...


_Touch = TypeVar("_Touch", bound=Timed)


def touches_in_window(
    touches: Iterable[_Touch], converted_at: datetime, window: timedelta
) -> list[_Touch]:
    """Distinct messages touched within `window` before the conversion, oldest first.

    A touch after the conversion never counts, however late the conversion arrived. A message
    with several qualifying outcomes counts once, at its latest one before the conversion.
    """
    start = converted_at - window
    latest: dict[str, _Touch] = {}
    for touch in touches:
        if not start <= touch.occurred_at <= converted_at:
            continue
        seen = latest.get(touch.message_id)
        if seen is None or touch.occurred_at > seen.occurred_at:
            latest[touch.message_id] = touch
    return sorted(latest.values(), key=lambda t: (t.occurred_at, t.message_id))


def shares(
    model: AttributionModel,
    ages: Sequence[timedelta],
    *,
    half_life: timedelta = timedelta(days=1),
) -> list[float]:
    """Each touch's share under `model`; `ages` (conversion time minus touch time) oldest first."""
    count = len(ages)
    if count == 0:
        return []
    if model == "last_touch":
        return [0.0] * (count - 1) + [1.0]
    if model == "first_touch":
        return [1.0] + [0.0] * (count - 1)
    if model == "linear":
        return [1.0 / count] * count
    if model == "time_decay":
        return _time_decay(ages, half_life)
    return _position_based(count)


def credits(
    model: AttributionModel,
    touches: Sequence[Touch],
    converted_at: datetime,
    *,
    half_life: timedelta = timedelta(days=1),
) -> list[Credit]:
    """The credited touches (oldest first) of touches already filtered by the window."""
    ages = [converted_at - touch.occurred_at for touch in touches]
    return [
        Credit(touch, share)
        for touch, share in zip(touches, shares(model, ages, half_life=half_life), strict=True)
        if share > 0
    ]


def _time_decay(ages: Sequence[timedelta], half_life: timedelta) -> list[float]:
    # Relative to the newest touch so the largest weight is 1 and nothing overflows; a touch
    # whose weight underflows to 0 is too old to matter and earns no credit.
    newest = min(ages)
    weights = [2.0 ** -((age - newest) / half_life) for age in ages]
    total = sum(weights)
    return [weight / total for weight in weights]


def _position_based(count: int) -> list[float]:
    if count == 1:
        return [1.0]
    if count == 2:
        return [0.5, 0.5]
    middle = (1.0 - 2 * POSITION_ENDS_SHARE) / (count - 2)
    return [POSITION_ENDS_SHARE] + [middle] * (count - 2) + [POSITION_ENDS_SHARE]
