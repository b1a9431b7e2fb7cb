"""Entering a segment's current members: when each one is due (at a fixed time, at their own
local time or at their best hour, spread by the throttle) and how far the scheduling may run
ahead.

Pure: the enrolment worker loads an `Enrolment`, asks it, and stores what it became.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

from services.journey.cron import Cron
from services.journey.profiles import zone_named

EnrolmentStatus = Literal["pending", "done", "cancelled"]
# The first and the last clocks on Earth: UTC+14 (Pacific/Kiritimati) and UTC-12.
EARLIEST_OFFSET = timedelta(hours=14)
LATEST_OFFSET = timedelta(hours=12)
_MINUTE = timedelta(minutes=1)


def local_instant(wall: datetime, zone: str | None) -> datetime:
    """The instant a naive wall time is reached in `zone` (UTC when absent or unknown).

    A wall time a DST change skips lands as far past the gap; an ambiguous one is the first.
    """
    return wall.replace(tzinfo=zone_named(zone), fold=0).astimezone(UTC)


def first_local_instant(wall: datetime) -> datetime:
    """When the wall time comes first anywhere: on the UTC+14 clocks."""
    return wall.replace(tzinfo=UTC) - EARLIEST_OFFSET


def spacing(per_minute: int) -> timedelta:
    """The time between two entries the throttle lets through."""
    return _MINUTE / per_minute


@dataclass
class Enrolment:
    """One entry of a segment's current members into a journey version.

    Members are taken in profile id order; `cursor` is the last one taken, so a crash resumes
    after it (the cursor is written in the transaction that writes the runs). Each member is due
    at `at`, or at `local_time` on their own clock; the throttle spreads those due at the same
    instant `per_minute` a minute (`slots`: how many each instant has so far).
    """

    id: str
    journey_id: str
    version: int
    segment_id: str
    per_minute: int
    due_at: datetime
    at: datetime | None = None
    local_time: datetime | None = None
    best_time_within: timedelta | None = None
    occurrence: int = 1
    status: EnrolmentStatus = "pending"
    started_at: datetime | None = None
    cursor: str | None = None
    scheduled: int = 0
    slots: dict[str, int] = field(default_factory=dict)

    def start(self, now: datetime, lookahead: timedelta) -> None:
        """Turns are counted from the planned start (`due_at` when first claimed), unless the
        worker comes later than the lookahead (the service was down then): from now, so that
        the turns missed meanwhile do not all come at once."""
        if self.started_at is None:
            self.started_at = self.due_at if now - self.due_at <= lookahead else now

    @property
    def takes_all_at_start(self) -> bool:
        """At local times or best hours, members' instants are hours apart: all are taken at
        the start, each due at their own."""
        return self.local_time is not None or self.best_time_within is not None

    def room(self, now: datetime, lookahead: timedelta, batch: int) -> int:
        """How many members to take now: at a fixed time, those whose slot comes within the
        lookahead (members are taken close to their turn, and timers do not pile up); at local
        times or best hours, a batch."""
        if self.takes_all_at_start:
            return batch
        assert self.started_at is not None
        ahead = now + lookahead - self.started_at
        allowed = int(ahead / spacing(self.per_minute)) + 1 - self.scheduled
        return max(0, min(batch, allowed))

    def instant_for(self, zone: str | None) -> datetime:
        """When a member in `zone` is due, before the throttle."""
        if self.local_time is not None:
            return local_instant(self.local_time, zone)
        assert self.at is not None
        return self.at

    def take_slot(self, instant: datetime) -> datetime:
        """The member's due time: the instant (or the start, if it passed before), after those
        already due then, one `spacing` apart."""
        assert self.started_at is not None
        base = max(instant, self.started_at).astimezone(UTC)
        key = base.isoformat()
        taken = self.slots.get(key, 0)
        self.slots[key] = taken + 1
        self.scheduled += 1
        return base + taken * spacing(self.per_minute)

    def taken(self, members: list[str], room: int, now: datetime, lookahead: timedelta) -> None:
        """Members taken up to the last of `members`: done when fewer came than there was room
        for; else look again when the next slot comes within the lookahead."""
        if members:
            self.cursor = members[-1]
        if len(members) < room:
            self.status = "done"
            return
        if self.takes_all_at_start:
            self.due_at = now
            return
        assert self.started_at is not None
        next_slot = self.started_at + self.scheduled * spacing(self.per_minute)
        self.due_at = max(now, next_slot - lookahead)


@dataclass(frozen=True)
class Repeat:
    """A recurring broadcast, `times` occurrences in all: every `every` from the first, or at
    the times a `cron` expression matches from the start on."""

    every: timedelta | None
    times: int
    cron: Cron | None = None

    def occurrences(self, start: datetime) -> list[datetime]:
        """Each occurrence's time: instants from an instant (a cron on the UTC clock), wall
        times from a wall time. A cron may find fewer than `times` within ten years."""
        if self.cron is not None:
            return self.cron.times(start, self.times)
        assert self.every is not None
        return [start + n * self.every for n in range(self.times)]
