"""Cron expressions for recurring broadcasts: five fields (minute, hour, day of month, month, day
of week) matched against wall times, as crontab(5) reads them.

Pure: the broadcasts API parses `repeat.cron` and asks it for the times of the occurrences.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from services.journey.conditions import InvalidDefinition

FIELD = "repeat.cron"
"""Where a broadcast request writes its cron expression (errors name it)."""
# Occurrences are looked for this far after the start at most: ten years, as `at` allows.
SEARCH_DAYS = 3660
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    first_name: int = 0


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTHS, 1),
    # 0 and 7 are both Sunday.
    _Field("day of week", 0, 7, _WEEKDAYS, 0),
)


@dataclass(frozen=True)
class Cron:
    """A parsed expression: the values each field allows (weekdays as Python counts them,
    Monday 0), and whether the day fields were restricted: when both are, a day matching
    either matches (crontab(5)); a field starting with `*` is not restricted."""

    expression: str
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_restricted: bool
    weekdays_restricted: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """Five fields separated by spaces: `*`, numbers, ranges `a-b`, steps `/n` and lists
        `a,b`; month and weekday names (`JAN`, `MON`) in any case. InvalidDefinition names
        `repeat.cron` and says which field is wrong."""
        fields = expression.split()
        if len(fields) != len(_FIELDS):
            raise InvalidDefinition(
                FIELD,
                "five fields: minute hour day-of-month month day-of-week (such as 0 10 * * MON)",
            )
        minutes, hours, days, months, weekdays = (
            _values(text, spec) for text, spec in zip(fields, _FIELDS, strict=True)
        )
        return cls(
            expression=" ".join(fields),
            minutes=tuple(sorted(minutes)),
            hours=tuple(sorted(hours)),
            days=frozenset(days),
            months=frozenset(months),
            weekdays=frozenset((value - 1) % 7 for value in weekdays),
            days_restricted=not fields[2].startswith("*"),
            weekdays_restricted=not fields[4].startswith("*"),
        )

    def matches_day(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month, in_week = day.day in self.days, day.weekday() in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return in_month or in_week
        return in_month and in_week

    def next_time(self, start: datetime, until: datetime) -> datetime | None:
        """The first time the expression matches at or after `start` (to the minute, seconds
        rounded up) and before `until`; None when there is none. An aware `start` is matched
        on the UTC clock and the answer is aware; a naive one is a wall time."""
        if start.tzinfo is not None:
            found = self.next_time(_utc_wall(start), _utc_wall(until))
            return found.replace(tzinfo=UTC) if found is not None else None
        candidate = _minute_at_or_after(start)
        day, earliest = candidate.date(), candidate.time()
        while day <= until.date():
            if self.matches_day(day):
                at = self._first_time_from(earliest)
                if at is not None and datetime.combine(day, at) < until:
                    return datetime.combine(day, at)
            day, earliest = day + timedelta(days=1), time(0, 0)
        return None

    def times(self, start: datetime, count: int) -> list[datetime]:
        """Up to `count` times from `start` on, within ten years of it."""
        until = start + timedelta(days=SEARCH_DAYS)
        found: list[datetime] = []
        at = self.next_time(start, until)
        while at is not None and len(found) < count:
            found.append(at)
            at = self.next_time(at + timedelta(minutes=1), until)
        return found

    def _first_time_from(self, earliest: time) -> time | None:
        for hour in self.hours:
            if hour < earliest.hour:
                continue
            for minute in self.minutes:
                if hour > earliest.hour or minute >= earliest.minute:
                    return time(hour, minute)
        return None


def _values(text: str, spec: _Field) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        values.update(_part(part, spec))
    return values


def _part(part: str, spec: _Field) -> range:
    """One list item: `*`, `n`, `a-b`, each with an optional `/step`."""
    span, slash, step_text = part.partition("/")
    step = _number(step_text, spec, "a step") if slash else 1
    if step < 1:
        raise _wrong(spec, f"the step {step_text!r} must be at least 1")
    if span == "*":
        low, high = spec.low, spec.high
    elif "-" in span:
        first, _, last = span.partition("-")
        low, high = _value(first, spec), _value(last, spec)
        if low > high:
            raise _wrong(spec, f"the range {span!r} runs backwards")
    else:
        low = _value(span, spec)
        # `5/15` counts from 5 to the field's end; a plain `5` is 5 alone.
        high = spec.high if slash else low
    return range(low, high + 1, step)


def _value(text: str, spec: _Field) -> int:
    upper = text.upper()
    if upper in spec.names:
        return spec.names.index(upper) + spec.first_name
    value = _number(text, spec, "a value")
    if not spec.low <= value <= spec.high:
        raise _wrong(spec, f"{value} is not within {spec.low}-{spec.high}")
    return value


def _number(text: str, spec: _Field, what: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise _wrong(spec, f"{text!r} is not {what}")
    return int(text)


def _wrong(spec: _Field, message: str) -> InvalidDefinition:
    return InvalidDefinition(FIELD, f"the {spec.name} field: {message}")


def _minute_at_or_after(at: datetime) -> datetime:
    whole = at.replace(second=0, microsecond=0)
    return whole if whole == at else whole + timedelta(minutes=1)


def _utc_wall(at: datetime) -> datetime:
    return at.astimezone(UTC).replace(tzinfo=None)
