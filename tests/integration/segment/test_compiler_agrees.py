"""The SQL compiler and the in-memory evaluator decide alike, on generated profiles and rules."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

import services.segment
from libs.devstack.pytest_plugin import SettingsFactory
from services.segment.compiler import SqlCompiler
from services.segment.rules import (
    Behaviour,
    Condition,
    ProfileFacts,
    Transition,
    matches,
    next_expiry,
    parse_conditions,
)
from services.segment.store import SegmentStore
from tests.integration.support import migrated_service_schema

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

NOW = datetime(2025, 3, 14, 12, 0, tzinfo=UTC)
MIGRATIONS = Path(services.segment.__file__).parent / "migrations"

scalars = st.one_of(
    st.integers(-3, 3),
    st.sampled_from([0.5, 2.5, 1.0]),
    st.booleans(),
    st.sampled_from(["a", "b", "tea", "green tea", "Tea", "é"]),
)
values = st.one_of(scalars, st.lists(scalars, max_size=3))


@st.composite
def value_tests(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte", "in", "contains", "exists"]))
    if op == "exists":
        return {"op": op}
    if op == "in":
        return {"op": op, "value": draw(st.lists(values, min_size=1, max_size=3))}
    if op in ("gt", "gte", "lt", "lte"):
        ordered = st.one_of(st.integers(-3, 3), st.just(0.5), st.sampled_from(["b", "tea"]))
        return {"op": op, "value": draw(ordered)}
    return {"op": op, "value": draw(scalars if op == "contains" else values)}


@st.composite
def event_conditions(draw: st.DrawFn) -> dict[str, Any]:
    condition: dict[str, Any] = {"event": draw(st.sampled_from(["order_completed", "page"]))}
    comparison = {draw(st.sampled_from(["eq", "gt", "gte", "lt", "lte"])): draw(st.integers(0, 3))}
    measure = draw(st.sampled_from(["count", "sum", None]))
    if measure == "count":
        condition["count"] = comparison
    elif measure == "sum":
        condition["sum"] = {"property": "revenue", **comparison}
    window = draw(st.sampled_from([None, "PT10S", "PT50S"]))
    if window:
        condition["within"] = window
    filters = draw(st.lists(value_tests(), max_size=1))
    condition["where"] = [{"property": "category", **f} for f in filters]
    return condition


leaves = st.one_of(
    st.builds(lambda test: {"trait": "plan", **test}, value_tests()),
    st.builds(lambda tag: {"tag": tag}, st.sampled_from(["vip", "churned"])),
    st.builds(
        lambda stage: {"lifecycle_stage": stage},
        st.one_of(st.sampled_from(["new", "at_risk"]), st.just(["new", "at_risk"])),
    ),
    st.builds(
        lambda op, value: {"score": "rfm", "op": op, "value": value},
        st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte"]),
        st.integers(0, 5),
    ),
    st.just({"in_segment": "seg_x"}),
    event_conditions(),
)
trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.builds(lambda c: {"all": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"any": c}, st.lists(children, min_size=1, max_size=3)),
        st.builds(lambda c: {"not": c}, children),
    ),
    max_leaves=6,
)


@st.composite
def profiles(draw: st.DrawFn, index: int) -> ProfileFacts:
    ages = st.sampled_from([0, 5, 10, 30, 50, 60])
    properties = st.fixed_dictionaries(
        {},
        optional={
            "category": values,
            "revenue": st.one_of(st.integers(0, 3), st.just(0.5), st.just("x")),
        },
    )
    behaviours: dict[str, list[Behaviour]] = {}
    for name in draw(st.lists(st.sampled_from(["order_completed", "page"]), max_size=4)):
        occurred_at = NOW - timedelta(seconds=draw(ages))
        behaviours.setdefault(name, []).append(Behaviour(occurred_at, draw(properties)))
    return ProfileFacts(
        f"prf_{index}",
        traits=draw(st.dictionaries(st.just("plan"), values)),
        tags=sorted(draw(st.sets(st.sampled_from(["vip", "churned"])))),
        lifecycle_stage=draw(st.sampled_from([None, "new", "at_risk"])),
        scores=draw(st.dictionaries(st.just("rfm"), st.integers(0, 5))),
        segments=draw(st.sets(st.just("seg_x"))),
        behaviours=behaviours,
    )


@dataclass
class Case:
    people: list[ProfileFacts]
    conditions: list[Condition]


@st.composite
def cases(draw: st.DrawFn) -> Case:
    people = [draw(profiles(index)) for index in range(draw(st.integers(1, 6)))]
    conditions = [parse_conditions(draw(trees)) for _ in range(5)]
    return Case(people, conditions)


def generated_cases(count: int) -> list[Case]:
    collected: list[Case] = []

    # Hypothesis drives a sync function; the database checks run afterwards, asynchronously.
    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @given(cases())
    def collect(case: Case) -> None:
        collected.append(case)

    collect()
    return collected


@pytest_asyncio.fixture(loop_scope="session")
async def store_schema(settings_factory: SettingsFactory) -> AsyncIterator[tuple[Any, str]]:
    async with migrated_service_schema(settings_factory, "segment_compiler", MIGRATIONS) as store:
        yield store


async def test_sql_and_memory_agree_on_members_and_timers(store_schema: tuple[Any, str]) -> None:
    sessions, schema = store_schema
    for case in generated_cases(150):
        async with sessions() as session, session.begin():
            store = SegmentStore(session, schema)
            await _store_people(store, case.people)
            for condition in case.conditions:
                in_memory = {p.profile_id for p in case.people if matches(condition, p, NOW)}
                assert await store.matching_profiles(condition, NOW) == in_memory, condition
                expected = {p.profile_id: next_expiry(condition, p, NOW) for p in case.people}
                assert await _expiries(session, schema, condition) == expected, condition
            await session.rollback()


async def _store_people(store: SegmentStore, people: list[ProfileFacts]) -> None:
    await store.save_profiles(people)
    await store.record_behaviours(
        [
            (p.profile_id, name, b.occurred_at, dict(b.properties))
            for p in people
            for name, behaviours in p.behaviours.items()
            for b in behaviours
        ]
    )
    await store.record_transitions(
        [Transition(s, 1, p.profile_id, True) for p in people for s in p.segments], NOW
    )


async def _expiries(session: Any, schema: str, condition: Condition) -> dict[str, datetime | None]:
    compiler = SqlCompiler(schema, NOW)
    expiry = compiler.next_expiry(condition) or "CAST(NULL AS timestamptz)"
    result = await session.execute(
        text(f"SELECT p.profile_id, {expiry} AS due FROM {schema}.profiles p"), compiler.params
    )
    return {row.profile_id: row.due for row in result}
