"""Field types shared by the event models, so one id or channel means one thing on every topic."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

ProfileId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
"""Closeloop's canonical profile id, assigned by the profile service."""

ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=255)]
"""An id chosen outside Closeloop: a Segment userId, anonymousId, messageId or groupId."""

EntityId = Annotated[str, StringConstraints(min_length=1, max_length=128)]
"""The id of something a Closeloop service owns: a segment, journey, node, template, request."""

EventId = Annotated[str, StringConstraints(min_length=1, max_length=255)]
"""A CloudEvents `ce_id`; for ingest events it is the client's Segment messageId."""

Name = Annotated[str, StringConstraints(min_length=1, max_length=255)]
"""A human-chosen name: an event name, page or screen name, conversion name."""

# Channels are adapters behind one interface, so the set grows; an enum would make every new
# channel a breaking change for every consumer of every message type.
Channel = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
"""A channel adapter's name: email, sms, push, webhook, wecom, wechat, or one added later."""

Topic = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")]
"""A subscription topic's id, defined in dispatch (`POST /topics`): newsletter, promotions…"""

VersionNumber = Annotated[int, Field(ge=1)]
"""A published version of a segment, journey or template: 1, 2, 3…"""

Properties = dict[str, Any]
"""Free-form JSON properties, as the client or author sent them."""

EARLIEST_EVENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
FUTURE_EVENT_TOLERANCE = timedelta(days=1)


def plausible_event_time(value: datetime) -> datetime:
    """`value`, if an event could have happened then: not before 1970, and not more than a day
    ahead of this clock (clients' clocks drift; a year-9999 event would sit in every window
    for ever, a year-1 one overflows window arithmetic)."""
    if value < EARLIEST_EVENT_TIME:
        raise ValueError(f"{value.isoformat()} is before 1970-01-01: not a plausible event time")
    return not_too_far_ahead(value)


def not_too_far_ahead(value: datetime) -> datetime:
    """`value`, if it is not more than a day ahead of this clock."""
    # Comparing aware datetimes asks each for its UTC offset, slow for pydantic's own tzinfo
    # (~0.35 µs): a value whose wall-clock hour is before the safe hour is plausible in any
    # time zone, and is let through on its fields alone.
    latest, safe_hour = _bounds()
    if (value.year, value.month, value.day, value.hour) < safe_hour:
        return value
    if value > latest:
        raise ValueError(f"{value.isoformat()} is more than a day in the future")
    return value


# A day ahead of now, taken again once a second: every event decoded checks its times against
# it, and reading the clock per check showed in profiles. Up to a second strict on a day's slack.
# Beside it, the wall-clock hour (year, month, day, hour) before which a time is plausible
# whatever its zone: that hour is 14 hours (the largest UTC offset) before the bound, in UTC.
_Hour = tuple[int, int, int, int]
_bounds_taken: tuple[float, datetime, _Hour] = (0.0, EARLIEST_EVENT_TIME, (1970, 1, 1, 0))
_LARGEST_UTC_OFFSET = timedelta(hours=14)


def _bounds() -> tuple[datetime, _Hour]:
    global _bounds_taken
    expires, latest, safe_hour = _bounds_taken
    now = time.monotonic()
    if now >= expires:
        latest = datetime.now(UTC) + FUTURE_EVENT_TOLERANCE
        safe = latest - _LARGEST_UTC_OFFSET
        safe_hour = (safe.year, safe.month, safe.day, safe.hour)
        _bounds_taken = (now + 1.0, latest, safe_hour)
    return latest, safe_hour


# The lower bound is checked inside pydantic's own validator (no Python call); the upper one
# moves with the clock, so it is a Python check.
EventTime = Annotated[
    AwareDatetime, Field(ge=EARLIEST_EVENT_TIME), AfterValidator(not_too_far_ahead)
]
"""A time something happened: aware, from 1970 to a day ahead of now."""
