"""A profile's purchase days: what the predictive scores and their backtests read.

The purchase models count purchase *days* (predictions.histories_from_purchases: purchases on
one calendar day are one buying decision worth their sum), so that is what a profile keeps: one
entry per UTC day, its first purchase's moment and the day's value. Days merge without knowing
the order purchases came in, as the rest of the profile state does.

A profile keeps at most `keep` days. Beyond that the oldest repeat days are folded into counts
(how many, their value, the last of them), and the first day always stays, so first purchase,
last purchase, repeat purchases and their mean value stay exact. What folding loses: a late
purchase on a folded day counts as one more day (nothing tells it from a new one), and so does
a folded day two merged profiles share. Both need more than `keep` purchase days.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from services.profile.predictions import PurchaseHistory

DAY_SECONDS = 86_400.0


def _day(at: float) -> int:
    """The UTC calendar day of a moment, as days since 1970-01-01."""
    return int(at // DAY_SECONDS)


def _latest(day: int | None, other: int) -> int:
    return other if day is None else max(day, other)


@dataclass
class PurchaseDays:
    """Purchases by UTC day: `days` holds (first purchase's moment, the day's value), oldest
    first, one per day; `folded_days` repeat days up to day `folded_through` were folded away,
    worth `folded_value`."""

    days: list[tuple[float, float]] = field(default_factory=list)
    folded_days: int = 0
    folded_value: float = 0.0
    folded_through: int | None = None

    def add(self, at: float, value: float, keep: int) -> None:
        """Record a purchase at `at` (epoch seconds of event time) worth `value`."""
        day = _day(at)
        index = bisect.bisect_left(self.days, day, key=lambda entry: _day(entry[0]))
        if index < len(self.days) and _day(self.days[index][0]) == day:
            moment, total = self.days[index]
            self.days[index] = (min(moment, at), total + value)
        elif index > 0 and self.folded_through is not None and day <= self.folded_through:
            # A day that may have been folded already: whether it was is not known any more.
            self.folded_days += 1
            self.folded_value += value
        else:
            self.days.insert(index, (at, value))
            self._fold(keep)

    def absorb(self, other: PurchaseDays, keep: int) -> None:
        """Take in the purchases of a profile that turned out to be the same person."""
        for at, value in other.days:
            self.add(at, value, keep)
        self.folded_days += other.folded_days
        self.folded_value += other.folded_value
        if other.folded_through is not None:
            self.folded_through = _latest(self.folded_through, other.folded_through)

    def _fold(self, keep: int) -> None:
        """Fold the oldest repeat days until `keep` days are left; the first day stays."""
        while len(self.days) > keep:
            moment, value = self.days.pop(1)
            self.folded_days += 1
            self.folded_value += value
            self.folded_through = _latest(self.folded_through, _day(moment))

    def history(self, as_of: float) -> PurchaseHistory | None:
        """The history the purchase models see at `as_of` (None before the first purchase), by
        the conventions of predictions.histories_from_purchases with UTC days."""
        days = [(moment, value) for moment, value in self.days if moment < as_of]
        if not days:
            return None
        first_day, last_day = _day(days[0][0]), _day(days[-1][0])
        repeats = len(days) - 1 + self.folded_days
        repeat_value = sum(value for _, value in days[1:]) + self.folded_value
        return PurchaseHistory(
            frequency=repeats,
            recency=float(last_day - first_day),
            age=(as_of - first_day * DAY_SECONDS) / DAY_SECONDS,
            monetary=repeat_value / repeats if repeats else 0.0,
        )

    def timeline(self) -> list[tuple[datetime, float]]:
        """Each kept day as a (moment, value) purchase, for a backtest. Folded days are not in
        it: a backtest of a profile past `keep` days sees only its last ones."""
        return [(datetime.fromtimestamp(at, UTC), value) for at, value in self.days]

    def to_json(self) -> dict[str, Any]:
        return {
            "days": self.days,
            "folded_days": self.folded_days,
            "folded_value": self.folded_value,
            "folded_through": self.folded_through,
        }

    @classmethod
    def from_json(cls, document: Mapping[str, Any]) -> PurchaseDays:
        return cls(
            days=[(at, value) for at, value in document.get("days", [])],
            folded_days=document.get("folded_days", 0),
            folded_value=document.get("folded_value", 0.0),
            folded_through=document.get("folded_through"),
        )
