"""The condition tree compiled to SQL over segment's own tables, for bulk evaluation and preview.

The SQL must decide exactly as `rules.matches` does; tests/integration/segment checks the two
against each other on generated trees. Profiles are `p` (the profiles table); every value is a
bound parameter.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from libs.common.db import checked_schema
from libs.common.values import number
from services.segment.rules import (
    AllCondition,
    AnyCondition,
    Condition,
    EventCondition,
    LifecycleCondition,
    NotCondition,
    ScoreCondition,
    SegmentCondition,
    SumComparison,
    TagCondition,
    TraitCondition,
    walk,
)

_OPERATORS = {"eq": "=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class SqlCompiler:
    """Turns conditions into SQL expressions about the profile `p`, collecting their parameters.

    `now` is where windows end, as in the in-memory evaluation.
    """

    def __init__(self, schema: str, now: datetime) -> None:
        self._schema = checked_schema(schema)
        self._now = now
        self.params: dict[str, Any] = {}

    def matches(self, condition: Condition) -> str:
        """A boolean expression: the profile `p` satisfies `condition`."""
        match condition:
            case AllCondition(conditions=children):
                return "(" + " AND ".join(self.matches(child) for child in children) + ")"
            case AnyCondition(conditions=children):
                return "(" + " OR ".join(self.matches(child) for child in children) + ")"
            case NotCondition(condition=child):
                return f"(NOT {self.matches(child)})"
            case TraitCondition(trait=name, op=op, value=value):
                return self._value_test(f"(p.traits -> {self._text(name)})", op, value)
            case ScoreCondition(score=name, op=op, value=value):
                return self._value_test(f"(p.scores -> {self._text(name)})", op, value)
            case TagCondition(tag=tag):
                return f"(p.tags @> jsonb_build_array({self._text(tag)}))"
            case LifecycleCondition():
                stages = self._json(condition.stages)
                return (
                    f"coalesce(p.lifecycle_stage IN (SELECT jsonb_array_elements_text({stages})),"
                    " false)"
                )
            case SegmentCondition(in_segment=segment_id):
                return (
                    f"EXISTS (SELECT 1 FROM {self._schema}.memberships m "
                    f"WHERE m.segment_id = {self._text(segment_id)} "
                    "AND m.profile_id = p.profile_id)"
                )
            case EventCondition():
                return self._event(condition)
        raise TypeError(f"not a condition: {condition!r}")

    def next_expiry(self, condition: Condition) -> str | None:
        """When the first counted behaviour leaves one of the condition's windows (NULL if none)."""
        windows = [
            f"((SELECT min(b.occurred_at) {self._selected(node)})"
            f" + CAST({self._bind(node.within)} AS interval))"
            for node in walk(condition)
            if isinstance(node, EventCondition) and node.within
        ]
        return f"LEAST({', '.join(windows)})" if windows else None

    def _event(self, condition: EventCondition) -> str:
        measure = condition.measure
        if isinstance(measure, SumComparison):
            value = f"(b.properties -> {self._text(measure.property)})"
            amount = (
                f"coalesce(sum(CASE WHEN jsonb_typeof({value}) = 'number' "
                f"THEN CAST({value} #>> '{{}}' AS numeric) END), 0)"
            )
        else:
            amount = "count(*)"
        threshold = self._numeric(measure.threshold)
        return (
            f"((SELECT {amount} {self._selected(condition)}) {_OPERATORS[measure.op]} {threshold})"
        )

    def _selected(self, condition: EventCondition) -> str:
        """FROM … WHERE of the behaviours an event condition counts for `p`."""
        clauses = [
            "b.profile_id = p.profile_id",
            f"b.event = {self._text(condition.event)}",
        ]
        if condition.within:
            since = self._bind(self._now - condition.within)
            clauses.append(f"b.occurred_at > CAST({since} AS timestamptz)")
        clauses += [
            self._value_test(f"(b.properties -> {self._text(f.property)})", f.op, f.value)
            for f in condition.where
        ]
        return f"FROM {self._schema}.behaviours b WHERE " + " AND ".join(clauses)

    def _value_test(self, value: str, op: str, expected: Any) -> str:
        """The SQL of `values.test_value` over a jsonb expression that is NULL when absent."""
        if op == "exists":
            return f"({value} IS NOT NULL AND jsonb_typeof({value}) <> 'null')"
        if op in ("eq", "neq"):
            equal = f"coalesce({value} = {self._json(expected)}, false)"
            return equal if op == "eq" else f"(NOT {equal})"
        if op == "in":
            return (
                f"coalesce({value} IN (SELECT jsonb_array_elements({self._json(expected)})), false)"
            )
        if op == "contains":
            return self._contains(value, expected)
        return self._ordered(value, op, expected)

    def _contains(self, value: str, expected: Any) -> str:
        in_array = f"WHEN 'array' THEN {value} @> jsonb_build_array({self._json(expected)})"
        in_string = (
            f"WHEN 'string' THEN strpos({value} #>> '{{}}', {self._text(expected)}) > 0 "
            if isinstance(expected, str)
            else ""
        )
        return f"(CASE jsonb_typeof({value}) {in_string}{in_array} ELSE false END)"

    def _ordered(self, value: str, op: str, expected: Any) -> str:
        operator = _OPERATORS[op]
        if isinstance(expected, str):
            # Byte order of UTF-8 is code point order: what Python's str comparison uses.
            return (
                f"(CASE WHEN jsonb_typeof({value}) = 'string' THEN "
                f"({value} #>> '{{}}') COLLATE \"C\" {operator} {self._text(expected)} "
                "ELSE false END)"
            )
        return (
            f"(CASE WHEN jsonb_typeof({value}) = 'number' THEN "
            f"CAST({value} #>> '{{}}' AS numeric) {operator} {self._numeric(number(expected))} "
            "ELSE false END)"
        )

    def _bind(self, value: Any) -> str:
        name = f"c{len(self.params)}"
        self.params[name] = value
        return f":{name}"

    def _text(self, value: str) -> str:
        return f"CAST({self._bind(value)} AS text)"

    def _json(self, value: Any) -> str:
        return f"CAST({self._bind(orjson.dumps(value).decode())} AS jsonb)"

    def _numeric(self, value: Any) -> str:
        # Sent as text: the decimal PostgreSQL parses is then exactly the one Python compared.
        return f"CAST(CAST({self._bind(str(value))} AS text) AS numeric)"
