"""A journey as a JSON graph: parsing it into typed nodes and validating its shape."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from functools import cached_property
from typing import Any, Literal

from libs.common.events import ContactRule
from libs.common.events.message import DEFAULT_PRIORITY
from libs.common.storable import storable_text
from libs.common.values import DurationRules, parse_duration
from services.journey.conditions import (
    Condition,
    InvalidDefinition,
    ValueTest,
    parse_condition,
    parse_filters,
)

NODE_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
ReentryRule = Literal["never", "always", "after"]
OUTCOMES = frozenset(
    {"sent", "failed", "suppressed", "delivered", "opened", "clicked", "unsubscribed"}
)
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_TOPIC = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_ENTITY_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
_TIME_OF_DAY = re.compile(r"^(?P<hour>[01]\d|2[0-3]):(?P<minute>[0-5]\d)$")
_DURATIONS = DurationRules(
    longest=timedelta(days=3660),
    malformed="not an ISO 8601 duration (such as P3D, PT12H or PT2S)",
    not_positive="a duration must be longer than zero",
    too_long="a duration is at most ten years",
    error=InvalidDefinition,
)
# The send-time model looks 48 hours ahead at most (timing.best_time_within).
_LONGEST_BEST_TIME_WINDOW = timedelta(hours=48)
_MAX_CHANNELS = 8
MAX_PER_MINUTE = 1_000_000
_MAX_JSON_DEPTH = 40


@dataclass(frozen=True)
class Entry:
    """How a profile enters: a segment's `segment.entered`, or a behaviour passing the filters.

    With `current_members`, publishing the version also enters everyone already in the segment,
    `per_minute` of them a minute at most (None: the service's setting)."""

    segment: str | None = None
    event: str | None = None
    where: tuple[tuple[str, ValueTest], ...] = ()
    current_members: bool = False
    per_minute: int | None = None


@dataclass(frozen=True)
class Reentry:
    rule: ReentryRule = "never"
    cooldown: timedelta | None = None


@dataclass(frozen=True)
class ExitRule:
    condition: Condition | None = None
    on_segment_exit: bool = False


@dataclass(frozen=True)
class Goal:
    event: str
    where: tuple[tuple[str, ValueTest], ...] = ()
    within: timedelta | None = None
    exit: bool = False


@dataclass(frozen=True)
class BestTime:
    """Wait for the person's best local hour on `channel`, at most `within` from now."""

    channel: str
    within: timedelta


@dataclass(frozen=True)
class SendOption:
    """A channel a send may go out on, the template rendered for it, and where the definition
    names that template (for errors)."""

    channel: str
    template_id: str
    template_field: str = "template_id"


@dataclass(frozen=True)
class Send:
    """A message request on one channel, or on the best of several (`options`, in the order the
    definition lists them); with `best_time` it first waits for the person's best hour."""

    id: str
    options: tuple[SendOption, ...]
    variables: Mapping[str, Any]
    next: str | None
    best_time: BestTime | None = None
    # The subscription topic its messages belong to (defined in dispatch), if any.
    topic: str | None = None

    @property
    def chooses_channel(self) -> bool:
        return len(self.options) > 1

    @property
    def channels(self) -> tuple[str, ...]:
        return tuple(option.channel for option in self.options)

    def option(self, channel: str) -> SendOption:
        return next(option for option in self.options if option.channel == channel)


@dataclass(frozen=True)
class Wait:
    id: str
    duration: timedelta | None
    until: time | None
    next: str | None
    best_time: BestTime | None = None


@dataclass(frozen=True)
class WaitFor:
    """Wait for a behaviour (`event`) or an outcome of an earlier send node (`outcome`, `node`)."""

    id: str
    timeout: timedelta
    next: str | None
    timeout_next: str | None
    event: str | None = None
    where: tuple[tuple[str, ValueTest], ...] = ()
    outcome: str | None = None
    send_node: str | None = None


@dataclass(frozen=True)
class BranchPath:
    condition: Condition
    next: str | None


@dataclass(frozen=True)
class Branch:
    id: str
    paths: tuple[BranchPath, ...]
    default: str | None


@dataclass(frozen=True)
class Arm:
    name: str
    weight: float
    next: str | None


@dataclass(frozen=True)
class Split:
    id: str
    arms: tuple[Arm, ...]


@dataclass(frozen=True)
class UpdateProfile:
    id: str
    set_traits: Mapping[str, Any]
    unset_traits: tuple[str, ...]
    add_tags: tuple[str, ...]
    remove_tags: tuple[str, ...]
    next: str | None


@dataclass(frozen=True)
class Exit:
    id: str


Node = Send | Wait | WaitFor | Branch | Split | UpdateProfile | Exit


@dataclass(frozen=True)
class Journey:
    """One version of a journey, parsed: what the run engine walks."""

    id: str
    version: int
    entry: Entry
    start: str
    nodes: Mapping[str, Node]
    reentry: Reentry = field(default_factory=Reentry)
    exit: ExitRule = field(default_factory=ExitRule)
    goal: Goal | None = None
    contact: ContactRule | None = None

    @classmethod
    def parse(cls, journey_id: str, version: int, definition: Any) -> Journey:
        """Parse and validate a definition; InvalidDefinition names the first problem."""
        check_json(definition, "")
        if not isinstance(definition, dict):
            raise InvalidDefinition("nodes", "a journey definition is a JSON object")
        _only(definition, {"entry", "reentry", "exit", "goal", "contact", "start", "nodes"}, "")
        nodes = _parse_nodes(definition.get("nodes"))
        start = definition.get("start")
        if not isinstance(start, str) or start not in nodes:
            raise InvalidDefinition("start", "names the first node; it must be one of `nodes`")
        journey = cls(
            id=journey_id,
            version=version,
            entry=_parse_entry(definition.get("entry")),
            start=start,
            nodes=nodes,
            reentry=_parse_reentry(definition.get("reentry")),
            exit=_parse_exit(definition.get("exit")),
            goal=_parse_goal(definition.get("goal")),
            contact=parse_contact(definition.get("contact"), "contact"),
        )
        _check_references(journey)
        _check_reachable(journey)
        _check_cycles(journey)
        return journey

    def sends(self) -> Iterator[Send]:
        return (node for node in self.nodes.values() if isinstance(node, Send))

    @cached_property
    def learns(self) -> bool:
        """Whether a node decides from the person's engagement (best time, best channel)."""
        return any(_learns(node) for node in self.nodes.values())


def _learns(node: Node) -> bool:
    match node:
        case Wait():
            return node.best_time is not None
        case Send():
            return node.chooses_channel or node.best_time is not None
    return False


def waits(node: Node) -> bool:
    """A node where a run stops until a timer or an event: a wait, a wait_for, a send at the
    person's best time."""
    return isinstance(node, Wait | WaitFor) or (
        isinstance(node, Send) and node.best_time is not None
    )


def successors(node: Node) -> list[tuple[str, str | None]]:
    """(field path below the node, next node id) for every edge leaving the node."""
    match node:
        case Send() | Wait() | UpdateProfile():
            return [("next", node.next)]
        case WaitFor():
            return [("next", node.next), ("timeout_next", node.timeout_next)]
        case Branch():
            edges = [(f"branches[{i}].next", path.next) for i, path in enumerate(node.paths)]
            return [*edges, ("default", node.default)]
        case Split():
            return [(f"arms[{i}].next", arm.next) for i, arm in enumerate(node.arms)]
    return []


def check_json(value: Any, path: str) -> None:
    """Refuse what cannot be stored or sent as JSON (NUL, lone surrogates, non-finite numbers,
    integers beyond 64 bits) and nesting deep enough to make any later recursion fail."""
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if depth > _MAX_JSON_DEPTH:
            raise InvalidDefinition(path or "nodes", f"JSON nests at most {_MAX_JSON_DEPTH} deep")
        if isinstance(item, dict):
            pending.extend((key, depth + 1) for key in item)
            pending.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            pending.extend((child, depth + 1) for child in item)
        elif isinstance(item, str) and not storable_text(item):
            raise InvalidDefinition(path or "nodes", "text cannot contain NUL or lone surrogates")
        elif isinstance(item, float) and not math.isfinite(item):
            raise InvalidDefinition(path or "nodes", "numbers must be finite")
        elif isinstance(item, int) and not -(2**63) <= item < 2**63:
            raise InvalidDefinition(path or "nodes", "integers must fit in 64 bits")


def _parse_nodes(raw: Any) -> dict[str, Node]:
    if not isinstance(raw, dict) or not raw:
        raise InvalidDefinition("nodes", "a non-empty object of nodes keyed by their id")
    if len(raw) > 500:
        raise InvalidDefinition("nodes", "a journey has at most 500 nodes")
    nodes: dict[str, Node] = {}
    for node_id, body in raw.items():
        path = f"nodes.{node_id}"
        if not NODE_ID_PATTERN.match(node_id):
            raise InvalidDefinition(path, "a node id is letters, digits, `_`, `.` and `-`")
        if not isinstance(body, dict):
            raise InvalidDefinition(path, "a node is a JSON object with a `type`")
        nodes[node_id] = _parse_node(node_id, body, path)
    return nodes


def _parse_node(node_id: str, body: dict[str, Any], path: str) -> Node:
    kind = body.get("type")
    parser = _NODE_PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise InvalidDefinition(f"{path}.type", f"one of {', '.join(_NODE_PARSERS)}")
    return parser(node_id, body, path)


def _send(node_id: str, body: dict[str, Any], path: str) -> Send:
    allowed = {"type", "channel", "template_id", "channels", "variables", "at_best_time_within"}
    _only(body, allowed | {"next", "topic"}, path)
    options = _send_options(body, path)
    variables = body.get("variables", {})
    if not isinstance(variables, dict):
        raise InvalidDefinition(f"{path}.variables", "an object of template variables")
    best_time = None
    if "at_best_time_within" in body:
        where = f"{path}.at_best_time_within"
        if len(options) > 1:
            raise InvalidDefinition(
                where, "only a send on one channel; put a `wait` with `best_time` before this one"
            )
        within = best_time_window(body["at_best_time_within"], where)
        best_time = BestTime(options[0].channel, within)
    topic = _topic(body["topic"], f"{path}.topic") if "topic" in body else None
    return Send(node_id, options, variables, _next(body, "next", path), best_time, topic)


def _topic(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _TOPIC.match(value):
        raise InvalidDefinition(path, "a topic id: lowercase letters, digits and `_`")
    return value


def _send_options(body: dict[str, Any], path: str) -> tuple[SendOption, ...]:
    """`channel` and `template_id`, or `channels`: a list of them, in the order to rank ties."""
    if "channels" not in body:
        channel = _channel(body.get("channel"), f"{path}.channel")
        return (SendOption(channel, _entity_id(body.get("template_id"), f"{path}.template_id")),)
    for single in ("channel", "template_id"):
        if single in body:
            raise InvalidDefinition(f"{path}.{single}", "give `channels` or `channel`, not both")
    raw = body["channels"]
    if not isinstance(raw, list) or not 1 <= len(raw) <= _MAX_CHANNELS:
        raise InvalidDefinition(
            f"{path}.channels", f"a list of 1 to {_MAX_CHANNELS} {{channel, template_id}}"
        )
    options: list[SendOption] = []
    for index, item in enumerate(raw):
        where = f"{path}.channels[{index}]"
        if not isinstance(item, dict):
            raise InvalidDefinition(where, "an option is {channel, template_id}")
        _only(item, {"channel", "template_id"}, where)
        channel = _channel(item.get("channel"), f"{where}.channel")
        if any(option.channel == channel for option in options):
            raise InvalidDefinition(f"{where}.channel", "each channel once in a send")
        template = _entity_id(item.get("template_id"), f"{where}.template_id")
        options.append(SendOption(channel, template, f"channels[{index}].template_id"))
    return tuple(options)


def _wait(node_id: str, body: dict[str, Any], path: str) -> Wait:
    _only(body, {"type", "duration", "until", "best_time", "next"}, path)
    given = [key for key in ("duration", "until", "best_time") if key in body]
    if len(given) != 1:
        raise InvalidDefinition(
            f"{path}.duration", "give one of `duration`, `until` (HH:MM) or `best_time`"
        )
    duration = until = best_time = None
    if "duration" in body:
        duration = parse_duration(body["duration"], f"{path}.duration", rules=_DURATIONS)
    elif "until" in body:
        until = _time_of_day(body["until"], f"{path}.until")
    else:
        best_time = _best_time(body["best_time"], f"{path}.best_time")
    return Wait(node_id, duration, until, _next(body, "next", path), best_time)


def _best_time(raw: Any, path: str) -> BestTime:
    if not isinstance(raw, dict):
        raise InvalidDefinition(path, 'an object such as {"channel": "email", "within": "PT24H"}')
    _only(raw, {"channel", "within"}, path)
    channel = _channel(raw.get("channel"), f"{path}.channel")
    return BestTime(channel, best_time_window(raw.get("within"), f"{path}.within"))


def best_time_window(raw: Any, path: str) -> timedelta:
    """A best-time window: an ISO 8601 duration of at most PT48H; InvalidDefinition names
    `path`."""
    within = parse_duration(raw, path, rules=_DURATIONS)
    if within > _LONGEST_BEST_TIME_WINDOW:
        raise InvalidDefinition(path, "at most PT48H: every hour of the day comes round by then")
    return within


def _wait_for(node_id: str, body: dict[str, Any], path: str) -> WaitFor:
    _only(
        body,
        {"type", "event", "where", "outcome", "node", "timeout", "next", "timeout_next"},
        path,
    )
    timeout = parse_duration(body.get("timeout"), f"{path}.timeout", rules=_DURATIONS)
    on_event = _next(body, "next", path)
    on_timeout = _next(body, "timeout_next", path)
    if ("event" in body) == ("outcome" in body):
        raise InvalidDefinition(f"{path}.event", "give either `event` or `outcome` with `node`")
    if "event" in body:
        if "node" in body:
            raise InvalidDefinition(f"{path}.node", "only an `outcome` names a send node")
        return WaitFor(
            node_id,
            timeout,
            on_event,
            on_timeout,
            event=_name(body["event"], f"{path}.event"),
            where=parse_filters(body.get("where"), f"{path}.where"),
        )
    outcome = body["outcome"]
    if not isinstance(outcome, str) or outcome not in OUTCOMES:
        raise InvalidDefinition(f"{path}.outcome", f"one of {', '.join(sorted(OUTCOMES))}")
    if "where" in body:
        raise InvalidDefinition(f"{path}.where", "only an `event` takes filters")
    send_node = body.get("node")
    if not isinstance(send_node, str):
        raise InvalidDefinition(f"{path}.node", "the id of the send node whose outcome counts")
    return WaitFor(node_id, timeout, on_event, on_timeout, outcome=outcome, send_node=send_node)


def _branch(node_id: str, body: dict[str, Any], path: str) -> Branch:
    _only(body, {"type", "branches", "default"}, path)
    raw = body.get("branches")
    if not isinstance(raw, list) or not raw:
        raise InvalidDefinition(f"{path}.branches", "a non-empty list of {condition, next}")
    paths = []
    for index, item in enumerate(raw):
        where = f"{path}.branches[{index}]"
        if not isinstance(item, dict):
            raise InvalidDefinition(where, "a branch is {condition, next}")
        _only(item, {"condition", "next"}, where)
        condition = parse_condition(item.get("condition"), f"{where}.condition")
        paths.append(BranchPath(condition, _next(item, "next", where)))
    return Branch(node_id, tuple(paths), _next(body, "default", path))


def _split(node_id: str, body: dict[str, Any], path: str) -> Split:
    _only(body, {"type", "arms"}, path)
    raw = body.get("arms")
    if not isinstance(raw, list) or not 1 <= len(raw) <= 20:
        raise InvalidDefinition(f"{path}.arms", "a list of 1 to 20 arms {name, weight, next}")
    arms: list[Arm] = []
    for index, item in enumerate(raw):
        where = f"{path}.arms[{index}]"
        if not isinstance(item, dict):
            raise InvalidDefinition(where, "an arm is {name, weight, next}")
        _only(item, {"name", "weight", "next"}, where)
        name = _name(item.get("name"), f"{where}.name")
        if any(arm.name == name for arm in arms):
            raise InvalidDefinition(f"{where}.name", "arm names are unique within a split")
        weight = item.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not weight > 0:
            raise InvalidDefinition(f"{where}.weight", "a positive number")
        if weight > 1e9:
            raise InvalidDefinition(f"{where}.weight", "at most 1e9")
        arms.append(Arm(name, float(weight), _next(item, "next", where)))
    return Split(node_id, tuple(arms))


def _update_profile(node_id: str, body: dict[str, Any], path: str) -> UpdateProfile:
    _only(body, {"type", "set_traits", "unset_traits", "add_tags", "remove_tags", "next"}, path)
    set_traits = body.get("set_traits", {})
    if not isinstance(set_traits, dict):
        raise InvalidDefinition(f"{path}.set_traits", "an object of traits to set")
    for name in set_traits:
        _name(name, f"{path}.set_traits")
    lists = {
        key: tuple(_names(body.get(key, []), f"{path}.{key}"))
        for key in ("unset_traits", "add_tags", "remove_tags")
    }
    if not set_traits and not any(lists.values()):
        raise InvalidDefinition(path, "an update_profile node changes at least one trait or tag")
    return UpdateProfile(
        node_id,
        set_traits,
        lists["unset_traits"],
        lists["add_tags"],
        lists["remove_tags"],
        _next(body, "next", path),
    )


def _exit(node_id: str, body: dict[str, Any], path: str) -> Exit:
    _only(body, {"type"}, path)
    return Exit(node_id)


_NODE_PARSERS: dict[str, Callable[[str, dict[str, Any], str], Node]] = {
    "send": _send,
    "wait": _wait,
    "wait_for": _wait_for,
    "branch": _branch,
    "split": _split,
    "update_profile": _update_profile,
    "exit": _exit,
}


def _parse_entry(raw: Any) -> Entry:
    if not isinstance(raw, dict) or ("segment" in raw) == ("event" in raw):
        raise InvalidDefinition("entry", "give `segment` (an id) or `event` (a behaviour name)")
    if "segment" in raw:
        _only(raw, {"segment", "current_members", "per_minute"}, "entry")
        current_members = raw.get("current_members", False)
        if not isinstance(current_members, bool):
            raise InvalidDefinition("entry.current_members", "true or false")
        per_minute = raw.get("per_minute")
        if per_minute is not None and not current_members:
            raise InvalidDefinition("entry.per_minute", "only with `current_members: true`")
        return Entry(
            segment=_entity_id(raw["segment"], "entry.segment"),
            current_members=current_members,
            per_minute=None if per_minute is None else per_minute_rate(per_minute, "entry"),
        )
    _only(raw, {"event", "where"}, "entry")
    return Entry(
        event=_name(raw["event"], "entry.event"),
        where=parse_filters(raw.get("where"), "entry.where"),
    )


def per_minute_rate(value: Any, path: str) -> int:
    """A throttle: a whole number of entries (or sends) a minute."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PER_MINUTE:
        raise InvalidDefinition(f"{path}.per_minute", f"a whole number from 1 to {MAX_PER_MINUTE}")
    return value


def _parse_reentry(raw: Any) -> Reentry:
    if raw is None:
        return Reentry()
    if not isinstance(raw, dict):
        raise InvalidDefinition("reentry", 'an object such as {"rule": "after", "cooldown": "P7D"}')
    _only(raw, {"rule", "cooldown"}, "reentry")
    rule = raw.get("rule")
    if rule == "after":
        return Reentry(
            "after", parse_duration(raw.get("cooldown"), "reentry.cooldown", rules=_DURATIONS)
        )
    if rule in ("never", "always"):
        if "cooldown" in raw:
            raise InvalidDefinition("reentry.cooldown", "only the `after` rule has a cooldown")
        return Reentry(rule)
    raise InvalidDefinition("reentry.rule", "one of never, always, after")


def _parse_exit(raw: Any) -> ExitRule:
    if raw is None:
        return ExitRule()
    if not isinstance(raw, dict):
        raise InvalidDefinition("exit", "an object with `condition` and/or `on_segment_exit`")
    _only(raw, {"condition", "on_segment_exit"}, "exit")
    on_segment_exit = raw.get("on_segment_exit", False)
    if not isinstance(on_segment_exit, bool):
        raise InvalidDefinition("exit.on_segment_exit", "true or false")
    condition = raw.get("condition")
    parsed = None if condition is None else parse_condition(condition, "exit.condition")
    return ExitRule(parsed, on_segment_exit)


def _parse_goal(raw: Any) -> Goal | None:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidDefinition("goal", "an object with `event`, `where`, `within` and `exit`")
    _only(raw, {"event", "where", "within", "exit"}, "goal")
    exits = raw.get("exit", False)
    if not isinstance(exits, bool):
        raise InvalidDefinition("goal.exit", "true or false")
    within = raw.get("within")
    return Goal(
        event=_name(raw.get("event"), "goal.event"),
        where=parse_filters(raw.get("where"), "goal.where"),
        within=None if within is None else parse_duration(within, "goal.within", rules=_DURATIONS),
        exit=exits,
    )


def parse_contact(raw: Any, path: str) -> ContactRule | None:
    """The contact policy's rule for the journey's messages: `priority` (0 to 100),
    `on_conflict` (drop or defer) and `transactional` (which takes neither)."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidDefinition(path, 'an object such as {"priority": 80, "on_conflict": "defer"}')
    _only(raw, {"priority", "on_conflict", "transactional"}, path)
    transactional = raw.get("transactional", False)
    if not isinstance(transactional, bool):
        raise InvalidDefinition(f"{path}.transactional", "true or false")
    if transactional:
        for name in ("priority", "on_conflict"):
            if name in raw:
                raise InvalidDefinition(
                    f"{path}.{name}", "a transactional message is never arbitrated"
                )
        return ContactRule(transactional=True)
    priority = raw.get("priority", DEFAULT_PRIORITY)
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 100:
        raise InvalidDefinition(f"{path}.priority", "a whole number from 0 to 100")
    on_conflict = raw.get("on_conflict", "drop")
    if on_conflict not in ("drop", "defer"):
        raise InvalidDefinition(f"{path}.on_conflict", "one of drop, defer")
    return ContactRule(priority=priority, on_conflict=on_conflict)


def _check_references(journey: Journey) -> None:
    if journey.exit.on_segment_exit and journey.entry.segment is None:
        raise InvalidDefinition("exit.on_segment_exit", "only a journey entered on a segment")
    for node in journey.nodes.values():
        for where, target in successors(node):
            if target is not None and target not in journey.nodes:
                raise InvalidDefinition(f"nodes.{node.id}.{where}", f"no node {target!r}")
        if isinstance(node, WaitFor) and node.send_node is not None:
            target_node = journey.nodes.get(node.send_node)
            if not isinstance(target_node, Send):
                raise InvalidDefinition(f"nodes.{node.id}.node", "must name a `send` node")


def _check_reachable(journey: Journey) -> None:
    seen = {journey.start}
    pending = [journey.start]
    while pending:
        for _, target in successors(journey.nodes[pending.pop()]):
            if target is not None and target not in seen:
                seen.add(target)
                pending.append(target)
    for node_id in journey.nodes:
        if node_id not in seen:
            raise InvalidDefinition(f"nodes.{node_id}", "unreachable from `start`")


def _check_cycles(journey: Journey) -> None:
    """A cycle must pass a node that waits, or a profile would loop without end in one step."""
    instant = {
        node_id: [t for _, t in successors(node) if t is not None]
        for node_id, node in journey.nodes.items()
        if not waits(node)
    }
    state: dict[str, int] = {}  # 1: on the path, 2: done
    for root in instant:
        if root in state:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(root, iter(instant[root]))]
        state[root] = 1
        while stack:
            node_id, targets = stack[-1]
            target = next(targets, None)
            if target is None:
                state[node_id] = 2
                stack.pop()
            elif target not in instant or state.get(target) == 2:
                continue
            elif state.get(target) == 1:
                raise InvalidDefinition(
                    f"nodes.{target}",
                    "is on a cycle with no node that waits (wait, wait_for, send at best time)",
                )
            else:
                state[target] = 1
                stack.append((target, iter(instant[target])))


def _only(raw: Mapping[str, Any], allowed: set[str], path: str) -> None:
    extra = sorted(str(key) for key in raw if key not in allowed)
    if extra:
        raise InvalidDefinition(f"{path}.{extra[0]}" if path else extra[0], "unknown field")


def _next(raw: Mapping[str, Any], key: str, path: str) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidDefinition(f"{path}.{key}", "a node id, or absent to end the journey there")
    return value


def _channel(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _CHANNEL.match(value):
        raise InvalidDefinition(path, "a channel name such as email, sms or push")
    return value


def _entity_id(value: Any, path: str) -> str:
    if not isinstance(value, str) or not _ENTITY_ID.match(value):
        raise InvalidDefinition(path, "an id of letters, digits, `_`, `.`, `:` and `-`")
    return value


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 255:
        raise InvalidDefinition(path, "a non-empty name of at most 255 characters")
    return value


def _names(value: Any, path: str) -> list[str]:
    if not isinstance(value, list):
        raise InvalidDefinition(path, "a list of names")
    return [_name(item, f"{path}[{i}]") for i, item in enumerate(value)]


def _time_of_day(value: Any, path: str) -> time:
    match = _TIME_OF_DAY.match(value) if isinstance(value, str) else None
    if match is None:
        raise InvalidDefinition(path, "a time of day HH:MM (24-hour), e.g. 09:30")
    return time(int(match["hour"]), int(match["minute"]))
