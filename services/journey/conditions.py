"""The journey condition language (branches, exit rules, event filters) and its evaluation."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from libs.common.events.profile import LIFECYCLE_STAGES
from libs.common.profiles import ProfileFacts
from libs.common.values import MISSING, lookup, test_value

OPS = frozenset({"eq", "neq", "gt", "gte", "lt", "lte", "in", "contains", "exists"})
_ORDERING_OPS = frozenset({"gt", "gte", "lt", "lte"})
_VALUE_LEAVES = ("trait", "score", "event_property")
_MAX_DEPTH = 32
# Definitions a marketer sends are held to today's stage names; stored ones are not, so that a
# published journey naming a stage that no longer exists still loads (and matches nobody).
_KNOWN_STAGES_ONLY: ContextVar[bool] = ContextVar("known_stages_only", default=False)


class InvalidDefinition(ValueError):
    """A journey definition is wrong at `path` (e.g. `nodes.send_coupon.template_id`)."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True)
class ValueTest:
    """`op` and `value` against one JSON value."""

    op: str
    value: Any

    def holds(self, actual: Any) -> bool:
        return test_value(self.op, actual, self.value)


@dataclass(frozen=True)
class Leaf:
    """`{"trait": "plan", "op": "eq", "value": "premium"}` and its kin."""

    kind: str  # trait, score, event_property, tag, lifecycle_stage
    name: str
    test: ValueTest


@dataclass(frozen=True)
class Group:
    kind: str  # all, any, not
    children: tuple[Condition, ...]


Condition = Leaf | Group


@dataclass(frozen=True)
class Context:
    """What a condition is evaluated against: the profile and the triggering event's properties."""

    facts: ProfileFacts
    event_properties: Mapping[str, Any]


def parse_condition(raw: Any, path: str, depth: int = 0) -> Condition:
    """Parse a condition tree, or raise InvalidDefinition naming the first wrong place."""
    if depth > _MAX_DEPTH:
        raise InvalidDefinition(path, f"conditions nest at most {_MAX_DEPTH} deep")
    if not isinstance(raw, dict):
        raise InvalidDefinition(path, "a condition is a JSON object")
    groups = [key for key in ("all", "any", "not") if key in raw]
    if groups:
        return _parse_group(raw, groups, path, depth)
    kinds = [key for key in (*_VALUE_LEAVES, "tag", "lifecycle_stage") if key in raw]
    if len(kinds) != 1:
        raise InvalidDefinition(
            path,
            "a condition is one of all, any, not, trait, tag, lifecycle_stage, score, "
            "event_property",
        )
    kind = kinds[0]
    if kind == "tag":
        _only(raw, {"tag"}, path)
        return Leaf("tag", _name(raw["tag"], f"{path}.tag"), ValueTest("exists", None))
    if kind == "lifecycle_stage":
        _only(raw, {"lifecycle_stage"}, path)
        return Leaf("lifecycle_stage", "", _stages(raw["lifecycle_stage"], path))
    _only(raw, {kind, "op", "value"}, path)
    name = _name(raw[kind], f"{path}.{kind}")
    return Leaf(kind, name, parse_test(raw, path, default_op="eq"))


def parse_filters(raw: Any, path: str) -> tuple[tuple[str, ValueTest], ...]:
    """`[{"property": "category", "op": "eq", "value": "tea"}, …]`: every filter must hold."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise InvalidDefinition(path, "a list of property filters")
    filters = []
    for index, item in enumerate(raw):
        where = f"{path}[{index}]"
        if not isinstance(item, dict):
            raise InvalidDefinition(where, "a filter is a JSON object")
        _only(item, {"property", "op", "value"}, where)
        name = _name(item.get("property"), f"{where}.property")
        filters.append((name, parse_test(item, where, default_op="eq")))
    return tuple(filters)


def parse_test(raw: Mapping[str, Any], path: str, *, default_op: str) -> ValueTest:
    op = raw.get("op", default_op)
    if not isinstance(op, str) or op not in OPS:
        raise InvalidDefinition(f"{path}.op", f"one of {', '.join(sorted(OPS))}")
    value = raw.get("value")
    problem = _value_problem(op, value)
    if problem:
        raise InvalidDefinition(f"{path}.value", problem)
    return ValueTest(op, value)


def _parse_group(raw: dict[str, Any], groups: list[str], path: str, depth: int) -> Group:
    if len(groups) != 1 or len(raw) != 1:
        raise InvalidDefinition(path, "a group has exactly one key: all, any or not")
    kind = groups[0]
    where = f"{path}.{kind}"
    if kind == "not":
        return Group("not", (parse_condition(raw["not"], where, depth + 1),))
    children = raw[kind]
    if not isinstance(children, list) or not children:
        raise InvalidDefinition(where, "a non-empty list of conditions")
    return Group(
        kind,
        tuple(
            parse_condition(child, f"{where}[{i}]", depth + 1) for i, child in enumerate(children)
        ),
    )


def _only(raw: Mapping[str, Any], allowed: set[str], path: str) -> None:
    extra = sorted(str(key) for key in raw if key not in allowed)
    if extra:
        raise InvalidDefinition(f"{path}.{extra[0]}", "unknown field")


def _name(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 255:
        raise InvalidDefinition(path, "a non-empty name of at most 255 characters")
    return value


@contextmanager
def known_stages_only() -> Iterator[None]:
    """Within it, a condition naming a lifecycle stage that does not exist is invalid."""
    token = _KNOWN_STAGES_ONLY.set(True)
    try:
        yield
    finally:
        _KNOWN_STAGES_ONLY.reset(token)


def _stages(value: Any, path: str) -> ValueTest:
    where = f"{path}.lifecycle_stage"
    if isinstance(value, str) and value:
        _check_stages([value], where)
        return ValueTest("eq", value)
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        _check_stages(value, where)
        return ValueTest("in", value)
    raise InvalidDefinition(where, "a stage or a non-empty list of stages")


def _check_stages(stages: Sequence[str], where: str) -> None:
    unknown = [stage for stage in stages if stage not in LIFECYCLE_STAGES]
    if unknown and _KNOWN_STAGES_ONLY.get():
        raise InvalidDefinition(
            where, f"unknown lifecycle stage {unknown[0]!r}: one of {', '.join(LIFECYCLE_STAGES)}"
        )


def _value_problem(op: str, value: Any) -> str | None:
    if op == "exists":
        return "`exists` takes no value" if value is not None else None
    if value is None:
        return f"`{op}` needs a value"
    if op == "in" and not (isinstance(value, list) and value):
        return "`in` needs a non-empty list of values"
    if op in _ORDERING_OPS and (
        isinstance(value, bool) or not isinstance(value, int | float | str)
    ):
        return f"`{op}` compares with a number or a string"
    if op == "contains" and not isinstance(value, str | int | float | bool):
        return "`contains` looks for a string, number or boolean"
    return None


def holds(condition: Condition, context: Context) -> bool:
    if isinstance(condition, Group):
        if condition.kind == "all":
            return all(holds(child, context) for child in condition.children)
        if condition.kind == "any":
            return any(holds(child, context) for child in condition.children)
        return not holds(condition.children[0], context)
    return condition.test.holds(_actual(condition, context))


def filters_hold(filters: Sequence[tuple[str, ValueTest]], properties: Mapping[str, Any]) -> bool:
    return all(test.holds(lookup(properties, name)) for name, test in filters)


def _actual(leaf: Leaf, context: Context) -> Any:
    facts = context.facts
    match leaf.kind:
        case "trait":
            return facts.traits.get(leaf.name, MISSING)
        case "score":
            return facts.scores.get(leaf.name, MISSING)
        case "tag":
            return True if leaf.name in facts.tags else MISSING
        case "lifecycle_stage":
            return facts.lifecycle_stage if facts.lifecycle_stage is not None else MISSING
    return lookup(context.event_properties, leaf.name)
