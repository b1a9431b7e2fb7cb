"""Moving a profile through a journey: entry, re-entry, each node's decision, waits and keys.

Pure: the handlers and the timer worker load a run, call these, and store what they return.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

from libs.common.events import ProfileSnapshot
from libs.common.profiles import ProfileFacts, snapshot_of
from services.journey.conditions import Context, filters_hold, holds
from services.journey.graph import (
    BestTime,
    Branch,
    Exit,
    Journey,
    Send,
    SendOption,
    Split,
    UpdateProfile,
    Wait,
    WaitFor,
)
from services.journey.learning import NO_EVIDENCE, Learning
from services.journey.profiles import zone_named

RunStatus = Literal["active", "waiting", "held", "completed", "exited"]
LIVE = ("active", "waiting", "held")
JOURNEY = ""
"""The node id under which journey-wide counters are kept (entered, completed, exited, goal)."""
DecisionKind = Literal["send_time", "channel"]
OUTCOME_COUNTER = "outcome:"
"""The prefix of a send node's counters of its messages' outcomes (`outcome:sent`...)."""


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
class Timing:
    """A best-time decision a run carries until its next wait. The sends it leads to are
    targeted (their hour was the model's choice) unless it explored; `woke` marks a send at best
    time whose wait has just ended, so that it sends instead of waiting again."""

    node_id: str
    targeted: bool
    woke: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"node_id": self.node_id, "targeted": self.targeted, "woke": self.woke}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> Timing:
        return cls(raw["node_id"], raw["targeted"], raw["woke"])


@dataclass
class ChannelRanking:
    """A send on several channels: the order to try them in, how many were tried, and whether
    its hour was the model's choice (its fallbacks go out at that hour too)."""

    ranking: list[str]
    tried: int
    targeted: bool

    def next_channel(self) -> str | None:
        return self.ranking[self.tried] if self.tried < len(self.ranking) else None

    def to_json(self) -> dict[str, Any]:
        return {"ranking": self.ranking, "tried": self.tried, "targeted": self.targeted}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ChannelRanking:
        return cls(list(raw["ranking"]), raw["tried"], raw["targeted"])


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
    timing: Timing | None = None
    channels: dict[str, ChannelRanking] = field(default_factory=dict)

    @property
    def live(self) -> bool:
        return self.status in LIVE


@dataclass(frozen=True)
class SendStep:
    """A message to request: on which channel and template, with the profile's facts as they
    stood when it was asked for, and whether its hour was chosen."""

    node: Send
    option: SendOption
    request_id: str
    idempotency_key: str
    variables: dict[str, Any]
    profile: ProfileSnapshot
    targeted: bool = False


@dataclass(frozen=True)
class Decision:
    """A learned choice of a run's step, logged with its probability under the policy so that
    other policies can be evaluated offline on the history (inverse propensity weighting).

    `send_time`: the local `hour` chosen for `channel` and when the wait ends (`wake_at`).
    `channel`: the `channel` chosen, the `ranking` of fallbacks, every eligible channel's
    `probabilities`, and the request made.
    """

    journey_id: str
    version: int
    node_id: str
    profile_id: str
    run: int
    kind: DecisionKind
    decided_at: datetime
    explored: bool
    probability: float
    channel: str
    hour: int | None = None
    wake_at: datetime | None = None
    ranking: tuple[str, ...] = ()
    probabilities: dict[str, float] = field(default_factory=dict)
    request_id: str | None = None


@dataclass(frozen=True)
class ProfileUpdateStep:
    node: UpdateProfile
    request_id: str


@dataclass
class Steps:
    """What advancing runs decided: messages to request, profile changes, learned decisions,
    and counters."""

    sends: list[tuple[Run, SendStep]] = field(default_factory=list)
    updates: list[tuple[Run, ProfileUpdateStep]] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    counters: Counter[tuple[str, int, str, str]] = field(default_factory=Counter)

    def count(self, run: Run, node_id: str, counter: str) -> None:
        self.counters[(run.journey_id, run.version, node_id, counter)] += 1

    def count_outcome(self, journey_id: str, version: int, node_id: str, outcome: str) -> None:
        """An outcome dispatch reported for a message a send node asked for (whatever run)."""
        self.counters[(journey_id, version, node_id, f"{OUTCOME_COUNTER}{outcome}")] += 1


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


def hold_until(run: Run, due_at: datetime) -> None:
    """A current member's new run waits at the start, held, for its turn: the timer worker
    resumes it then, as after a pause (so a paused journey holds it at its first send)."""
    run.status, run.due_at = "held", due_at


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
    learning: Learning = NO_EVIDENCE,
) -> None:
    """Execute nodes from `run.node_id` until the run waits, holds, exits or ends; `learning`
    makes the decisions of best-time waits and sends on several channels."""
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
        woke = run.timing is not None and run.timing.woke and run.timing.node_id == node.id
        if isinstance(node, Send) and paused:
            _hold(run)
            return
        if not woke:  # a send at best time was entered when its wait began
            steps.count(run, node.id, "entered")
        match node:
            case Wait():
                _start_wait(run, node, facts, now, steps, learning)
                return
            case WaitFor():
                run.status, run.due_at, run.timing = "waiting", now + node.timeout, None
                return
            case Exit():
                exit_run(run, steps, "exit_node")
                return
            case Send() if node.best_time is not None and not woke:
                _wait_for_best_time(run, node.id, node.best_time, facts, now, steps, learning)
                return
            case Send():
                _send(run, node, facts, now, steps, learning)
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
    if isinstance(node, Send):
        # A send at best time: its hour has come, so it sends (and completes) when advanced.
        assert run.timing is not None
        run.timing.woke = True
        run.status, run.due_at = "active", None
        return
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
    draw = int.from_bytes(hashlib.sha256(_seed(run, node.id).encode()).digest()[:8], "big") / 2**64
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
    tz = zone_named(zone)
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


def fall_back(
    journey: Journey, run: Run, facts: ProfileFacts, node_id: str, request: str, steps: Steps
) -> bool:
    """The message a send on several channels asked for cannot be delivered: ask for the next
    channel of the send's ranking. False when the message is not the node's latest of this run,
    the run exited (a goal or an exit condition ends what it sends), or no channel is left."""
    node = journey.nodes.get(node_id)
    ranking = run.channels.get(node_id)
    if (
        not isinstance(node, Send)
        or ranking is None
        or run.requests.get(node_id) != request
        or run.status == "exited"
    ):
        return False
    channel = ranking.next_channel()
    if channel is None:
        return False
    ranking.tried += 1
    option = node.option(channel)
    steps.sends.append(
        (run, _send_step(run, node, option, facts, targeted=ranking.targeted, fallback=True))
    )
    steps.count(run, node_id, "fallbacks")
    return True


def undeliverable(outcome: str, *, reason: str | None, retryable: bool | None) -> bool:
    """Whether an outcome says the channel cannot reach the person, so that the next channel
    should be tried: suppressed for consent or an unsubscription, or failed for good. Frequency
    caps and quiet hours are about the person, not the channel: no other channel is tried."""
    if outcome == "suppressed":
        return reason in ("consent", "unsubscribed")
    return outcome == "failed" and retryable is False


def _start_wait(
    run: Run, node: Wait, facts: ProfileFacts, now: datetime, steps: Steps, learning: Learning
) -> None:
    if node.best_time is not None:
        _wait_for_best_time(run, node.id, node.best_time, facts, now, steps, learning)
        return
    run.status, run.timing = "waiting", None
    if node.duration is not None:
        run.due_at = now + node.duration
    else:
        assert node.until is not None
        run.due_at = next_time_of_day(now, node.until, facts.timezone)


def _wait_for_best_time(
    run: Run,
    node_id: str,
    best_time: BestTime,
    facts: ProfileFacts,
    now: datetime,
    steps: Steps,
    learning: Learning,
) -> None:
    wake_at = choose_send_time(run, node_id, best_time, facts.timezone, now, steps, learning)
    run.status, run.due_at = "waiting", wake_at


def choose_send_time(
    run: Run,
    node_id: str,
    best_time: BestTime,
    zone: str | None,
    now: datetime,
    steps: Steps,
    learning: Learning,
) -> datetime:
    """When the run's send at `node_id` goes: the person's best hour on the channel within the
    window from `now`. The decision is logged with its probability, and the send it leads to is
    targeted unless it explored."""
    chosen = learning.send_time(
        run.profile_id, best_time.channel, _seed(run, node_id), now, zone, best_time.within
    )
    run.timing = Timing(node_id, targeted=not chosen.explored)
    steps.decisions.append(
        Decision(
            run.journey_id,
            run.version,
            node_id,
            run.profile_id,
            run.number,
            "send_time",
            now,
            chosen.explored,
            chosen.probability,
            best_time.channel,
            hour=chosen.hour,
            wake_at=chosen.wake_at,
        )
    )
    return chosen.wake_at


def _send(
    run: Run, node: Send, facts: ProfileFacts, now: datetime, steps: Steps, learning: Learning
) -> None:
    targeted = run.timing is not None and run.timing.targeted
    if run.timing is not None:
        run.timing.woke = False
    if not node.chooses_channel:
        steps.sends.append((run, _send_step(run, node, node.options[0], facts, targeted=targeted)))
        return
    reachable = [channel for channel in node.channels if facts.can_reach(channel)]
    choice = learning.channel(run.profile_id, node.channels, reachable, _seed(run, node.id))
    if choice.channel is None:
        run.channels.pop(node.id, None)  # an earlier pass's ranking has no more to try
        steps.count(run, node.id, "unreachable")
        return
    run.channels[node.id] = ChannelRanking(list(choice.ranking), 1, targeted)
    step = _send_step(run, node, node.option(choice.channel), facts, targeted=targeted)
    steps.sends.append((run, step))
    steps.decisions.append(
        Decision(
            run.journey_id,
            run.version,
            node.id,
            run.profile_id,
            run.number,
            "channel",
            now,
            choice.explored,
            choice.probability,
            choice.channel,
            ranking=choice.ranking,
            probabilities=dict(choice.probabilities),
            request_id=step.request_id,
        )
    )


def _send_step(
    run: Run,
    node: Send,
    option: SendOption,
    facts: ProfileFacts,
    *,
    targeted: bool,
    fallback: bool = False,
) -> SendStep:
    key = idempotency_key(run.journey_id, run.version, node.id, run.profile_id, run.number)
    if fallback:  # its own key: dispatch sends once per key, and the first try used the step's
        key = f"{key}:{option.channel}"
    request = request_id(key)
    run.requests[node.id] = request
    variables = dict(node.variables)
    if run.trigger.event is not None:
        variables["event"] = {"event": run.trigger.event, "properties": run.trigger.properties}
    variables["journey"] = {"id": run.journey_id, "version": run.version, "node": node.id}
    return SendStep(node, option, request, key, variables, snapshot_of(facts), targeted)


def _hold(run: Run) -> None:
    """Resumed from this node when the journey resumes: at resume time, not a chosen hour."""
    run.status, run.due_at = "held", None
    if run.timing is not None:
        run.timing.targeted = False


def _seed(run: Run, node_id: str) -> str:
    return f"{run.journey_id}:{run.version}:{node_id}:{run.profile_id}:{run.number}"


def _context(run: Run, facts: ProfileFacts) -> Context:
    return Context(facts, run.trigger.properties)


def _finish(run: Run, steps: Steps, status: RunStatus, reason: str | None) -> None:
    run.status, run.due_at, run.exit_reason, run.timing = status, None, reason, None
    steps.count(run, JOURNEY, status)
