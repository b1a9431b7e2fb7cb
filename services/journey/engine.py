"""Moving a profile through a journey: entry, re-entry, each node's decision, waits and keys.

Pure: the handlers and the timer worker load a run, call these, and store what they return.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from services.journey.conditions import Context, filters_hold, holds
from services.journey.graph import (
    Branch,
    Exit,
    Journey,
    Send,
    Split,
    UpdateProfile,
    Wait,
    WaitFor,
)
from services.journey.profiles import ProfileFacts

RunStatus = Literal["active", "waiting", "held", "completed", "exited"]
LIVE = ("active", "waiting", "held")
JOURNEY = ""
"""The node id under which journey-wide counters are kept (entered, completed, exited, goal)."""


@dataclass(frozen=True)
class Trigger:
    """The event that moved a run last: its ce_id, its behaviour (if any) and its event time."""

    event_id: str | None
    occurred_at: datetime
    event: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "occurred_at": self.occurred_at.isoformat(),
            "event": self.event,
            "properties": self.properties,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Trigger:
        return cls(
            raw.get("event_id"),
            datetime.fromisoformat(raw["occurred_at"]),
            raw.get("event"),
            raw.get("properties") or {},
        )


@dataclass
class Run:
    """One profile's pass through one journey version (`number` counts its entries)."""

    journey_id: str
    version: int
    profile_id: str
    number: int
    node_id: str | None
    status: RunStatus
    entered_at: datetime
    trigger: Trigger
    arms: dict[str, str] = field(default_factory=dict)
    requests: dict[str, str] = field(default_factory=dict)
    due_at: datetime | None = None
    exit_reason: str | None = None
    goal_reached_at: datetime | None = None

    @property
    def live(self) -> bool:
        return self.status in LIVE


@dataclass(frozen=True)
class SendStep:
    node: Send
    request_id: str
    idempotency_key: str
    variables: dict[str, Any]


@dataclass(frozen=True)
class ProfileUpdateStep:
    node: UpdateProfile
    request_id: str


@dataclass
class Steps:
    """What advancing runs decided: messages to request, profile changes, and counters."""

    sends: list[tuple[Run, SendStep]] = field(default_factory=list)
    updates: list[tuple[Run, ProfileUpdateStep]] = field(default_factory=list)
    counters: Counter[tuple[str, int, str, str]] = field(default_factory=Counter)

    def count(self, run: Run, node_id: str, counter: str) -> None:
        self.counters[(run.journey_id, run.version, node_id, counter)] += 1


def idempotency_key(journey_id: str, version: int, node_id: str, profile_id: str, run: int) -> str:
    """`<journey_id>:v<version>:<node_id>:<profile_id>:<run>` (decision 0009)."""
    return f"{journey_id}:v{version}:{node_id}:{profile_id}:{run}"


def request_id(key: str) -> str:
    """The request's id, derived from its key so a replayed step asks with the same id."""
    return "req_" + _digest(key)


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:26]


def may_enter(journey: Journey, previous: Run | None, at: datetime) -> bool:
    """The re-entry rule, given the profile's latest run of this journey (any version)."""
    if previous is None:
        return True
    if previous.live:
        return False  # a profile runs a journey once at a time, whatever the rule
    rule = journey.reentry
    if rule.rule == "never":
        return False
    if rule.rule == "always":
        return True
    assert rule.cooldown is not None
    return at >= previous.entered_at + rule.cooldown


def enter(journey: Journey, profile_id: str, number: int, trigger: Trigger, steps: Steps) -> Run:
    """A new run at the start node (not yet advanced)."""
    run = Run(
        journey_id=journey.id,
        version=journey.version,
        profile_id=profile_id,
        number=number,
        node_id=journey.start,
        status="active",
        entered_at=trigger.occurred_at,
        trigger=trigger,
    )
    steps.count(run, JOURNEY, "entered")
    return run


def entry_matches(journey: Journey, event: str, properties: dict[str, Any]) -> bool:
    entry = journey.entry
    return entry.event == event and filters_hold(entry.where, properties)


def advance(
    journey: Journey,
    run: Run,
    facts: ProfileFacts,
    now: datetime,
    steps: Steps,
    *,
    paused: bool,
    step_limit: int,
) -> None:
    """Execute nodes from `run.node_id` until the run waits, holds, exits or ends."""
    for _ in range(step_limit):
        if run.node_id is None:
            _finish(run, steps, "completed", None)
            return
        if journey.exit.condition is not None and holds(
            journey.exit.condition, _context(run, facts)
        ):
            exit_run(run, steps, "exit_condition")
            return
        node = journey.nodes[run.node_id]
        if isinstance(node, Send) and paused:
            # Resumed from this node when the journey resumes.
            run.status, run.due_at = "held", None
            return
        steps.count(run, node.id, "entered")
        match node:
            case Wait():
                _start_wait(run, node, facts, now)
                return
            case WaitFor():
                run.status, run.due_at = "waiting", now + node.timeout
                return
            case Exit():
                exit_run(run, steps, "exit_node")
                return
            case Send():
                steps.sends.append((run, _send_step(run, node)))
                run.node_id = node.next
            case UpdateProfile():
                key = idempotency_key(
                    run.journey_id, run.version, node.id, run.profile_id, run.number
                )
                steps.updates.append((run, ProfileUpdateStep(node, "upd_" + _digest(key))))
                run.node_id = node.next
            case Branch():
                run.node_id = choose_branch(node, _context(run, facts))
            case Split():
                arm = choose_arm(node, run)
                run.arms[node.id] = arm.name
                steps.count(run, node.id, f"arm:{arm.name}")
                run.node_id = arm.next
        steps.count(run, node.id, "completed")
    exit_run(run, steps, "step_limit")


def leave_wait(journey: Journey, run: Run, steps: Steps, outcome: str) -> None:
    """A wait fired (`fired`), or a wait_for matched (`matched`) or timed out (`timed_out`)."""
    assert run.node_id is not None
    node = journey.nodes[run.node_id]
    steps.count(run, node.id, "completed")
    if outcome != "fired":
        steps.count(run, node.id, outcome)
    if isinstance(node, WaitFor):
        run.node_id = node.timeout_next if outcome == "timed_out" else node.next
    else:
        assert isinstance(node, Wait)
        run.node_id = node.next
    run.status, run.due_at = "active", None


def waits_for_event(journey: Journey, run: Run, event: str, properties: dict[str, Any]) -> bool:
    node = journey.nodes.get(run.node_id) if run.node_id else None
    return (
        run.status == "waiting"
        and isinstance(node, WaitFor)
        and node.event == event
        and filters_hold(node.where, properties)
    )


def waits_for_outcome(
    journey: Journey, run: Run, outcome: str, send_node: str, request: str
) -> bool:
    """The run waits for this outcome of this send node, and the message is this run's own."""
    node = journey.nodes.get(run.node_id) if run.node_id else None
    return (
        run.status == "waiting"
        and isinstance(node, WaitFor)
        and node.outcome == outcome
        and node.send_node == send_node
        and run.requests.get(send_node) == request
    )


def reaches_goal(journey: Journey, run: Run, event: str, properties: dict[str, Any]) -> bool:
    goal = journey.goal
    return (
        goal is not None
        and run.goal_reached_at is None
        and goal.event == event
        and filters_hold(goal.where, properties)
    )


def reach_goal(journey: Journey, run: Run, at: datetime, steps: Steps) -> None:
    """Count the goal; a live run ends if the goal says so."""
    run.goal_reached_at = at
    steps.count(run, JOURNEY, "goal_reached")
    if run.live and run.node_id is not None:
        steps.count(run, run.node_id, "goal_reached")
    if run.live and journey.goal is not None and journey.goal.exit:
        exit_run(run, steps, "goal")


def goal_deadline(journey: Journey, entered_at: datetime) -> datetime | None:
    """Until when a goal event counts for a run (None: no goal, or no window)."""
    goal = journey.goal
    if goal is None or goal.within is None:
        return None
    return entered_at + goal.within


def exit_run(run: Run, steps: Steps, reason: str) -> None:
    if run.node_id is not None:
        steps.count(run, run.node_id, "exited")
    _finish(run, steps, "exited", reason)


def choose_branch(node: Branch, context: Context) -> str | None:
    for path in node.paths:
        if holds(path.condition, context):
            return path.next
    return node.default


def choose_arm(node: Split, run: Run) -> Any:
    """Weighted and deterministic: the same profile, run and node always get the same arm."""
    seed = f"{run.journey_id}:{run.version}:{node.id}:{run.profile_id}:{run.number}"
    draw = int.from_bytes(hashlib.sha256(seed.encode()).digest()[:8], "big") / 2**64
    total = sum(arm.weight for arm in node.arms)
    point = draw * total
    for arm in node.arms:
        point -= arm.weight
        if point < 0:
            return arm
    return node.arms[-1]


def next_time_of_day(now: datetime, at: time, zone: str | None) -> datetime:
    """The first moment after `now` when the clock in `zone` (UTC if unknown) shows `at`.

    Days are stepped as calendar dates, not 24 hours, so a DST change keeps the wall time.
    """
    tz = _zone(zone)
    local_now = now.astimezone(tz)
    day = local_now.date()
    for offset in range(3):
        candidate = _wall_time(day + timedelta(days=offset), at, tz)
        if candidate > now:
            return candidate
    raise AssertionError("a time of day recurs within three days")


def _wall_time(day: date, at: time, tz: ZoneInfo) -> datetime:
    # fold=0: an ambiguous wall time (DST ends) is its first occurrence; a skipped one (DST
    # starts) maps with the offset from before the gap, landing as far past the gap (02:30 is
    # 03:30). Either way the result is one real instant, compared in UTC.
    return datetime.combine(day, at).replace(tzinfo=tz).astimezone(UTC)


def _zone(name: str | None) -> ZoneInfo:
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return ZoneInfo("UTC")


def _start_wait(run: Run, node: Wait, facts: ProfileFacts, now: datetime) -> None:
    run.status = "waiting"
    if node.duration is not None:
        run.due_at = now + node.duration
    else:
        assert node.until is not None
        run.due_at = next_time_of_day(now, node.until, facts.timezone)


def _send_step(run: Run, node: Send) -> SendStep:
    key = idempotency_key(run.journey_id, run.version, node.id, run.profile_id, run.number)
    request = request_id(key)
    run.requests[node.id] = request
    variables = dict(node.variables)
    if run.trigger.event is not None:
        variables["event"] = {"event": run.trigger.event, "properties": run.trigger.properties}
    variables["journey"] = {"id": run.journey_id, "version": run.version, "node": node.id}
    return SendStep(node, request, key, variables)


def _context(run: Run, facts: ProfileFacts) -> Context:
    return Context(facts, run.trigger.properties)


def _finish(run: Run, steps: Steps, status: RunStatus, reason: str | None) -> None:
    run.status, run.due_at, run.exit_reason = status, None, reason
    steps.count(run, JOURNEY, status)
