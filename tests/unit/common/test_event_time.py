"""Event times: from 1970 to a day ahead of this clock, whatever the model they are on."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from pydantic import BaseModel, ValidationError

from libs.common.events.fields import EventTime


class Happened(BaseModel):
    at: EventTime


def test_times_from_1970_to_a_day_ahead_are_accepted() -> None:
    now = datetime.now(UTC)
    for at in (datetime(1970, 1, 1, tzinfo=UTC), now, now + timedelta(hours=23)):
        assert Happened(at=at).at == at


def test_a_time_more_than_a_day_ahead_is_refused_with_the_reason() -> None:
    ahead = datetime.now(UTC) + timedelta(days=1, minutes=1)
    with pytest.raises(ValidationError, match="more than a day in the future"):
        Happened(at=ahead)
    with pytest.raises(ValidationError, match="more than a day in the future"):
        Happened.model_validate_json(f'{{"at": "{ahead.isoformat()}"}}')


@pytest.mark.parametrize("hours_west", [0, 5, 14])
def test_the_bound_holds_in_a_zone_west_of_utc(hours_west: int) -> None:
    """Its wall clock reads earlier than UTC's, so a time past the bound can look plausible
    on its fields alone: the fast path must not let it through."""
    zone = timezone(-timedelta(hours=hours_west))
    past_the_bound = (datetime.now(UTC) + timedelta(days=1, minutes=5)).astimezone(zone)
    within = (datetime.now(UTC) + timedelta(hours=23)).astimezone(zone)
    with pytest.raises(ValidationError, match="more than a day in the future"):
        Happened.model_validate_json(f'{{"at": "{past_the_bound.isoformat()}"}}')
    assert Happened.model_validate_json(f'{{"at": "{within.isoformat()}"}}').at == within


def test_a_time_before_1970_is_refused_with_the_reason() -> None:
    with pytest.raises(ValidationError, match="greater than or equal to 1970-01-01"):
        Happened.model_validate_json('{"at": "1969-12-31T23:59:59Z"}')


def test_the_bound_follows_the_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The day-ahead bound is taken once a second, not once: a day later it is a day later."""
    from libs.common.events import fields

    tomorrow_noon = datetime.now(UTC) + timedelta(days=1, hours=12)
    with pytest.raises(ValidationError):
        Happened(at=tomorrow_noon)
    # As a second on: the bounds are taken again.
    monkeypatch.setattr(fields, "_bounds_taken", (0.0, fields.EARLIEST_EVENT_TIME, (1970, 1, 1, 0)))
    monkeypatch.setattr(fields, "datetime", _ClockADayLater)
    assert Happened(at=tomorrow_noon).at == tomorrow_noon


class _ClockADayLater(datetime):
    @classmethod
    def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
        return datetime.now(UTC) + timedelta(days=1)
