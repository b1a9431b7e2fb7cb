"""A broadcast as a journey: one send node, entered by the segment's members at the time of each
occurrence (at a fixed time, at each person's local time, or at each person's best hour within
a window), throttled.

Being a journey version, a broadcast's send goes through content and dispatch as any journey
send does: consent, caps, quiet hours, exactly-once, stats and attribution are the journey's.
Pure: the broadcasts API builds it from the request and stores what it says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from libs.common.values import DurationRules, parse_duration
from services.journey.conditions import InvalidDefinition
from services.journey.cron import Cron
from services.journey.enrolment import LATEST_OFFSET, Enrolment, Repeat, first_local_instant
from services.journey.graph import best_time_window

SEND_NODE = "send"
"""The id of a broadcast's one node: its stats are under `nodes.send`."""
# A fixed time this far in the past is taken as meant for now (clocks differ a little).
_SKEW = timedelta(minutes=1)
_EVERY = DurationRules(
    longest=timedelta(days=366),
    malformed="not an ISO 8601 duration (such as P1D, P1W or PT12H)",
    not_positive="a repeat must be longer than zero",
    too_long="a repeat is at most a year",
    error=InvalidDefinition,
)
_SHORTEST_EVERY = timedelta(minutes=1)
_FURTHEST = timedelta(days=3660)


@dataclass(frozen=True)
class Broadcast:
    """What to send to whom and when: `at` (an instant) or `local_time` (a wall time on each
    person's clock), or neither (now); with `best_time_within`, each person at their best hour
    on the channel within that window from the occurrence's time; `per_minute` sends a minute
    at most; `repeat`."""

    segment: str
    channel: str
    template_id: str
    per_minute: int
    variables: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None
    local_time: datetime | None = None
    best_time_within: timedelta | None = None
    repeat: Repeat | None = None
    topic: str | None = None
    contact: dict[str, Any] | None = None

    def graph(self) -> dict[str, Any]:
        """The journey version it runs: everyone leaving the segment before their turn is not
        sent to; a repeating broadcast re-enters those whose previous send is over."""
        send: dict[str, Any] = {
            "type": "send",
            "channel": self.channel,
            "template_id": self.template_id,
            "variables": self.variables,
        }
        if self.topic is not None:
            send["topic"] = self.topic
        graph: dict[str, Any] = {
            "entry": {"segment": self.segment},
            "reentry": {"rule": "always" if self.repeat is not None else "never"},
            "exit": {"on_segment_exit": True},
            "start": SEND_NODE,
            "nodes": {SEND_NODE: send},
        }
        if self.contact is not None:
            graph["contact"] = self.contact
        return graph

    def check_times(self, now: datetime) -> None:
        """Refuse a time that has passed (`at` beyond a minute's skew, `local_time` once it has
        passed on every clock) or is more than ten years ahead, and a cron that does not come
        round `times` times within ten years."""
        if self.at is not None:
            if self.at < now - _SKEW:
                raise InvalidDefinition("at", "that time has passed; give a later one or none")
            if self.at > now + _FURTHEST:
                raise InvalidDefinition("at", "at most ten years ahead")
        if self.local_time is not None:
            # Compared as wall times first: an extreme one must not overflow the arithmetic.
            wall_now = now.astimezone(UTC).replace(tzinfo=None)
            if self.local_time > wall_now + _FURTHEST:
                raise InvalidDefinition("at_local_time", "at most ten years ahead")
            if self.local_time < wall_now - LATEST_OFFSET:
                raise InvalidDefinition("at_local_time", "that wall time has passed everywhere")
        if self.repeat is not None and self.repeat.cron is not None:
            found = len(self.occurrences(now))
            if found < self.repeat.times:
                raise InvalidDefinition(
                    "repeat.cron", f"it comes {found} times within ten years of the start"
                )

    def occurrences(self, now: datetime) -> list[datetime]:
        """Each occurrence's time: wall times at local times, else instants (the first `at`,
        or now)."""
        start = self.local_time if self.local_time is not None else (self.at or now)
        return [start] if self.repeat is None else self.repeat.occurrences(start)

    def enrolments(self, broadcast_id: str, now: datetime) -> list[Enrolment]:
        """One entry of the segment's current members per occurrence, each taken when it comes
        (at local times: when the first clock reaches it)."""
        return [
            self._enrolment(broadcast_id, occurrence, when, now)
            for occurrence, when in enumerate(self.occurrences(now), start=1)
        ]

    def _enrolment(
        self, broadcast_id: str, occurrence: int, when: datetime, now: datetime
    ) -> Enrolment:
        local_time = at = None
        if self.local_time is not None:
            local_time, due_at = when, max(now, first_local_instant(when))
        else:
            at, due_at = when, max(now, when)
        return Enrolment(
            id=f"{broadcast_id}:{occurrence}",
            journey_id=broadcast_id,
            version=1,
            segment_id=self.segment,
            per_minute=self.per_minute,
            due_at=due_at,
            at=at,
            local_time=local_time,
            best_time_within=self.best_time_within,
            occurrence=occurrence,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "segment": self.segment,
            "channel": self.channel,
            "template_id": self.template_id,
            "variables": self.variables,
            "per_minute": self.per_minute,
            "at": self.at.isoformat() if self.at is not None else None,
            "at_local_time": self.local_time.isoformat() if self.local_time is not None else None,
            "at_best_time": None
            if self.best_time_within is None
            else {"within": iso_duration(self.best_time_within)},
            "repeat": None if self.repeat is None else _repeat_json(self.repeat),
            "topic": self.topic,
            "contact": self.contact,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Broadcast:
        at, local_time, repeat = raw.get("at"), raw.get("at_local_time"), raw.get("repeat")
        best_time = raw.get("at_best_time")
        return cls(
            segment=raw["segment"],
            channel=raw["channel"],
            template_id=raw["template_id"],
            per_minute=raw["per_minute"],
            variables=raw.get("variables") or {},
            at=datetime.fromisoformat(at) if at else None,
            local_time=datetime.fromisoformat(local_time) if local_time else None,
            best_time_within=None
            if best_time is None
            else parse_best_time_within(best_time["within"]),
            repeat=None if repeat is None else _repeat_from_json(repeat),
            topic=raw.get("topic"),
            contact=raw.get("contact"),
        )


def _repeat_json(repeat: Repeat) -> dict[str, Any]:
    if repeat.cron is not None:
        return {"cron": repeat.cron.expression, "times": repeat.times}
    assert repeat.every is not None
    return {"every": repeat.every.total_seconds(), "times": repeat.times}


def _repeat_from_json(raw: dict[str, Any]) -> Repeat:
    if raw.get("cron") is not None:
        return Repeat(None, raw["times"], Cron.parse(raw["cron"]))
    return Repeat(timedelta(seconds=raw["every"]), raw["times"])


def parse_repeat(every: str | None, cron: str | None, times: int) -> Repeat:
    """`every` an ISO 8601 duration of a minute to a year, or `cron` five cron fields, not
    both; InvalidDefinition names the field."""
    if every is not None and cron is not None:
        raise InvalidDefinition("repeat.cron", "give `every` or `cron`, not both")
    if cron is not None:
        return Repeat(None, times, Cron.parse(cron))
    if every is None:
        raise InvalidDefinition(
            "repeat.every", "give `every` (an ISO 8601 duration such as P7D) or `cron`"
        )
    interval = parse_duration(every, "repeat.every", rules=_EVERY)
    if interval < _SHORTEST_EVERY:
        raise InvalidDefinition("repeat.every", "a repeat is at least a minute (PT1M)")
    return Repeat(interval, times)


def parse_best_time_within(within: Any) -> timedelta:
    """The window in which each member's best hour is taken: an ISO 8601 duration of at most
    PT48H; InvalidDefinition names `at_best_time.within`."""
    return best_time_window(within, "at_best_time.within")


def iso_duration(value: timedelta) -> str:
    """A positive duration as ISO 8601 in hours, minutes and seconds (`PT24H`, `PT1H30M`)."""
    hours, rest = divmod(value.total_seconds(), 3600)
    minutes, seconds = divmod(rest, 60)
    parts = ((hours, "H"), (minutes, "M"), (seconds, "S"))
    return "PT" + "".join(f"{amount:g}{unit}" for amount, unit in parts if amount)


def broadcast_field(path: str) -> str:
    """The request field behind a path of the journey a broadcast builds."""
    if path == "entry.segment":
        return "segment"
    prefix = f"nodes.{SEND_NODE}."
    if path.startswith(prefix):
        return path.removeprefix(prefix)
    return "variables" if path == "nodes" else path
