"""The segment condition language: its models, validation, and evaluation against one profile."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from libs.common import profiles
from libs.common.events.profile import LIFECYCLE_STAGES
from libs.common.values import (
    MISSING,
    DurationRules,
    compare,
    number,
    parse_duration,
    test_value,
)

Op = Literal["eq", "neq", "gt", "gte", "lt", "lte", "in", "contains", "exists"]
NumberOp = Literal["eq", "neq", "gt", "gte", "lt", "lte", "exists"]
ORDERING_OPS = frozenset({"gt", "gte", "lt", "lte"})

# A window has no upper bound but timedelta's own.
_WINDOWS = DurationRules(
    malformed="not an ISO 8601 duration (such as P30D, PT12H or PT3S)",
    not_positive="a window must be longer than zero",
    too_long="a window is too long",
)
Duration = Annotated[timedelta, BeforeValidator(partial(parse_duration, rules=_WINDOWS))]
Scalar = str | int | float | bool


class _Node(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    kind: ClassVar[str]


class ValueTest(BaseModel):
    """`op` and `value` as a trait condition and an event's `where` filter write them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Op = "eq"
    value: Any = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> ValueTest:
        check_value(self.op, self.value)
        return self


def check_value(op: str, value: Any) -> None:
    if op == "exists":
        if value is not None:
            raise ValueError("`exists` takes no value")
        return
    if value is None:
        raise ValueError(f"`{op}` needs a value")
    if op == "in" and not (isinstance(value, list) and value):
        raise ValueError("`in` needs a non-empty list of values")
    if op in ORDERING_OPS and (isinstance(value, bool) or not isinstance(value, int | float | str)):
        raise ValueError(f"`{op}` compares with a number or a string")
    if op == "contains" and not isinstance(value, Scalar):
        raise ValueError("`contains` looks for a string, number or boolean")


class TraitCondition(_Node, ValueTest):
    """`{"trait": "plan", "op": "eq", "value": "premium"}`."""

    kind = "trait"
    trait: str = Field(min_length=1)


class PropertyFilter(ValueTest):
    """One `where` filter of an event condition: `{"property": "category", "value": "tea"}`."""

    property: str = Field(min_length=1)


class TagCondition(_Node):
    """`{"tag": "vip"}`: the profile carries the tag."""

    kind = "tag"
    tag: str = Field(min_length=1)


class LifecycleCondition(_Node):
    """`{"lifecycle_stage": "at_risk"}` or `{"lifecycle_stage": ["new", "active"]}`."""

    kind = "lifecycle_stage"
    lifecycle_stage: str | list[str] = Field(min_length=1)

    @field_validator("lifecycle_stage")
    @classmethod
    def _known_stages(cls, value: str | list[str], info: ValidationInfo) -> str | list[str]:
        if info.context is not None and info.context.get(_NEW_DEFINITION):
            unknown = [stage for stage in _listed(value) if stage not in LIFECYCLE_STAGES]
            if unknown:
                raise ValueError(
                    f"unknown lifecycle stage {unknown[0]!r}: one of {', '.join(LIFECYCLE_STAGES)}"
                )
        return value

    @property
    def stages(self) -> list[str]:
        return _listed(self.lifecycle_stage)


def _listed(stages: str | list[str]) -> list[str]:
    return [stages] if isinstance(stages, str) else stages


class ScoreCondition(_Node):
    """`{"score": "rfm", "op": "gte", "value": 400}`."""

    kind = "score"
    score: str = Field(min_length=1)
    op: NumberOp = "gte"
    value: int | float | None = None

    @model_validator(mode="after")
    def _value_fits_op(self) -> ScoreCondition:
        check_value(self.op, self.value)
        return self


class SegmentCondition(_Node):
    """`{"in_segment": "seg_vip"}`: the profile is a member of another segment."""

    kind = "in_segment"
    in_segment: str = Field(min_length=1)


class Comparison(BaseModel):
    """Exactly one of `eq`, `gt`, `gte`, `lt`, `lte`: `{"gte": 2}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    eq: float | None = None
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Comparison:
        if len(self.model_fields_set & {"eq", "gt", "gte", "lt", "lte"}) != 1:
            raise ValueError("give exactly one of eq, gt, gte, lt, lte")
        return self

    @property
    def op(self) -> str:
        return next(
            name for name in ("eq", "gt", "gte", "lt", "lte") if name in self.model_fields_set
        )

    @property
    def threshold(self) -> Decimal:
        return number(getattr(self, self.op)) or Decimal(0)


class SumComparison(Comparison):
    """`{"property": "revenue", "gte": 500}`: the sum of a numeric property."""

    property: str = Field(min_length=1)


AT_LEAST_ONCE = Comparison(gte=1)


class EventCondition(_Node):
    """`{"event": "order_completed", "count": {"gte": 2}, "within": "P30D", "where": [...]}`."""

    kind = "event"
    event: str = Field(min_length=1)
    count: Comparison | None = None
    sum: SumComparison | None = None
    within: Duration | None = None
    where: list[PropertyFilter] = Field(default_factory=list)

    @model_validator(mode="after")
    def _count_or_sum(self) -> EventCondition:
        if self.count is not None and self.sum is not None:
            raise ValueError("give `count` or `sum`, not both")
        return self

    @property
    def measure(self) -> Comparison:
        return self.sum or self.count or AT_LEAST_ONCE


class AllCondition(_Node):
    kind = "all"
    conditions: list[Condition] = Field(alias="all", min_length=1)


class AnyCondition(_Node):
    kind = "any"
    conditions: list[Condition] = Field(alias="any", min_length=1)


class NotCondition(_Node):
    kind = "not"
    condition: Condition = Field(alias="not")


_NODES: tuple[type[_Node], ...] = (
    AllCondition,
    AnyCondition,
    NotCondition,
    TraitCondition,
    TagCondition,
    LifecycleCondition,
    ScoreCondition,
    SegmentCondition,
    EventCondition,
)
KINDS = tuple(node.kind for node in _NODES)


def _kind_of(raw: Any) -> str | None:
    if isinstance(raw, _Node):
        return raw.kind
    if isinstance(raw, dict):
        return next((kind for kind in KINDS if kind in raw), None)
    return None


Condition = Annotated[
    Annotated[AllCondition, Tag("all")]
    | Annotated[AnyCondition, Tag("any")]
    | Annotated[NotCondition, Tag("not")]
    | Annotated[TraitCondition, Tag("trait")]
    | Annotated[TagCondition, Tag("tag")]
    | Annotated[LifecycleCondition, Tag("lifecycle_stage")]
    | Annotated[ScoreCondition, Tag("score")]
    | Annotated[SegmentCondition, Tag("in_segment")]
    | Annotated[EventCondition, Tag("event")],
    Discriminator(
        _kind_of,
        custom_error_type="unknown_condition",
        custom_error_message="a condition is an object with one of: " + ", ".join(KINDS),
    ),
]
for _node in (AllCondition, AnyCondition, NotCondition):
    _node.model_rebuild()
_CONDITION = TypeAdapter[Condition](Condition)


class InvalidDefinition(ValueError):
    """A segment definition that does not validate; `path` names the part that is wrong."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# Validation context of a definition being written (not one read back from the database).
_NEW_DEFINITION = "new_definition"


def parse_conditions(raw: Any, *, stored: bool = False) -> Condition:
    """The condition tree of a definition, or InvalidDefinition naming the first wrong path.

    A `stored` definition was validated when it was written: it is not refused now for naming a
    lifecycle stage that profile never computes (such a condition never holds), so segments
    saved before that check still load.
    """
    try:
        return _CONDITION.validate_python(raw, context={_NEW_DEFINITION: not stored})
    except ValidationError as error:
        first = error.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        raise InvalidDefinition(error_path(first["loc"]), message) from None


def error_path(loc: Sequence[int | str]) -> str:
    """`conditions.all[1].within` from pydantic's location, without the union's tags."""
    parts = ["conditions"]
    expect_tag = True
    for item in loc:
        if expect_tag and isinstance(item, str) and item in KINDS:
            expect_tag = False
            continue
        if isinstance(item, int):
            expect_tag = parts[-1] in ("all", "any")
            parts[-1] += f"[{item}]"
        else:
            expect_tag = item == "not"
            parts.append(item)
    return ".".join(parts)


def walk(condition: Condition) -> Iterator[Condition]:
    """Every node of the tree, the root first."""
    yield condition
    if isinstance(condition, AllCondition | AnyCondition):
        for child in condition.conditions:
            yield from walk(child)
    elif isinstance(condition, NotCondition):
        yield from walk(condition.condition)


def reference_key(condition: Condition) -> str | None:
    """The key of what a leaf reads; a change to that key may change the segment's members."""
    match condition:
        case EventCondition(event=name):
            return f"event:{name}"
        case TraitCondition(trait=name):
            return f"trait:{name}"
        case TagCondition(tag=name):
            return f"tag:{name}"
        case LifecycleCondition():
            return "lifecycle"
        case ScoreCondition(score=name):
            return f"score:{name}"
        case SegmentCondition(in_segment=segment_id):
            return f"segment:{segment_id}"
    return None


def references(condition: Condition) -> list[str]:
    return sorted({key for node in walk(condition) if (key := reference_key(node))})


def event_names(condition: Condition) -> set[str]:
    return {node.event for node in walk(condition) if isinstance(node, EventCondition)}


def has_window(condition: Condition) -> bool:
    return any(isinstance(node, EventCondition) and node.within for node in walk(condition))


@dataclass(frozen=True, slots=True)
class Behaviour:
    """One stored behaviour of a profile: when it happened and its properties."""

    occurred_at: datetime
    properties: Mapping[str, Any]


@dataclass
class ProfileFacts(profiles.ProfileFacts):
    """Everything the rules can read about one profile: the shared read model's facts, and the
    memberships and behaviours segment loads beside them when a rule needs them."""

    segments: set[str] = field(default_factory=set)
    behaviours: dict[str, list[Behaviour]] = field(default_factory=dict)


def matches(condition: Condition, facts: ProfileFacts, now: datetime) -> bool:
    """Whether the profile satisfies the condition at `now` (windows end at `now`)."""
    match condition:
        case AllCondition(conditions=children):
            return all(matches(child, facts, now) for child in children)
        case AnyCondition(conditions=children):
            return any(matches(child, facts, now) for child in children)
        case NotCondition(condition=child):
            return not matches(child, facts, now)
        case TraitCondition(trait=name, op=op, value=value):
            return test_value(op, facts.traits.get(name, MISSING), value)
        case TagCondition(tag=tag):
            return tag in facts.tags
        case LifecycleCondition():
            return facts.lifecycle_stage in condition.stages
        case ScoreCondition(score=name, op=op, value=value):
            return test_value(op, facts.scores.get(name, MISSING), value)
        case SegmentCondition(in_segment=segment_id):
            return segment_id in facts.segments
        case EventCondition():
            return _event_matches(condition, facts, now)
    raise TypeError(f"not a condition: {condition!r}")


def _event_matches(condition: EventCondition, facts: ProfileFacts, now: datetime) -> bool:
    selected = selected_behaviours(condition, facts, now)
    measure = condition.measure
    if isinstance(measure, SumComparison):
        amount = sum(
            (value for b in selected if (value := number(b.properties.get(measure.property)))),
            Decimal(0),
        )
    else:
        amount = Decimal(len(selected))
    return compare(measure.op, amount, measure.threshold)


def selected_behaviours(
    condition: EventCondition, facts: ProfileFacts, now: datetime
) -> list[Behaviour]:
    """The profile's behaviours the condition counts: its event, in its window, through `where`."""
    since = now - condition.within if condition.within else None
    return [
        behaviour
        for behaviour in facts.behaviours.get(condition.event, [])
        if (since is None or behaviour.occurred_at > since)
        and all(
            test_value(f.op, behaviour.properties.get(f.property, MISSING), f.value)
            for f in condition.where
        )
    ]


def next_expiry(condition: Condition, facts: ProfileFacts, now: datetime) -> datetime | None:
    """The first moment after `now` a behaviour leaves a window of the condition, if any."""
    due = [
        behaviour.occurred_at + node.within
        for node in walk(condition)
        if isinstance(node, EventCondition) and node.within
        for behaviour in selected_behaviours(node, facts, now)
    ]
    return min(due, default=None)


EVERYTHING = "*"
"""The touched key of a change that can affect any segment (a merge)."""

EVALUATE_PREFIX = "evaluate:"
"""A touched key naming one segment to re-evaluate whatever it references (a due timer)."""


@dataclass(frozen=True)
class SegmentRule:
    """A segment's current version, parsed once: what it reads and whether time changes it."""

    segment_id: str
    version: int
    condition: Condition
    refs: frozenset[str]
    windowed: bool

    @classmethod
    def parse(cls, segment_id: str, version: int, conditions: Any) -> SegmentRule:
        """A stored segment's rule (see `parse_conditions`)."""
        condition = parse_conditions(conditions, stored=True)
        return cls(
            segment_id, version, condition, frozenset(references(condition)), has_window(condition)
        )

    def affected_by(self, keys: set[str]) -> bool:
        return (
            EVERYTHING in keys
            or EVALUATE_PREFIX + self.segment_id in keys
            or not self.refs.isdisjoint(keys)
        )


@dataclass(frozen=True)
class Transition:
    """A profile entered (or left) a segment at one version."""

    segment_id: str
    version: int
    profile_id: str
    entered: bool


@dataclass
class Evaluation:
    """What one round decided: transitions, and each re-evaluated window's next timer (or none)."""

    transitions: list[Transition] = field(default_factory=list)
    timers: dict[tuple[str, str], datetime | None] = field(default_factory=dict)

    def touched(self) -> dict[str, set[str]]:
        """The keys this round's transitions touch, for segments built on these segments."""
        keys: dict[str, set[str]] = {}
        for transition in self.transitions:
            keys.setdefault(transition.profile_id, set()).add(f"segment:{transition.segment_id}")
        return keys


def reevaluate(
    rules: Sequence[SegmentRule],
    facts: Mapping[str, ProfileFacts],
    touched: Mapping[str, set[str]],
    now: datetime,
) -> Evaluation:
    """Evaluate each touched profile against the rules its changes can affect.

    The facts' memberships are updated as transitions are decided, so that a following round
    sees them when it evaluates segments that reference these.
    """
    evaluation = Evaluation()
    for profile_id, keys in touched.items():
        profile = facts.get(profile_id)
        if profile is None:
            continue
        for rule in rules:
            if rule.affected_by(keys):
                _decide(rule, profile, now, evaluation)
    return evaluation


def _decide(rule: SegmentRule, profile: ProfileFacts, now: datetime, into: Evaluation) -> None:
    member = matches(rule.condition, profile, now)
    if member != (rule.segment_id in profile.segments):
        into.transitions.append(
            Transition(rule.segment_id, rule.version, profile.profile_id, member)
        )
        if member:
            profile.segments.add(rule.segment_id)
        else:
            profile.segments.discard(rule.segment_id)
    if rule.windowed:
        into.timers[(rule.segment_id, profile.profile_id)] = next_expiry(
            rule.condition, profile, now
        )
