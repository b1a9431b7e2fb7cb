"""Retention over each service's real schema, migrated to head: the rows of each kind older than
its period are deleted (a few at a time, as the retention loop does), the newer ones stay, and
the rows a period does not apply to (live runs, sends not finished, each person's latest run)
stay whatever their age."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import services
from libs.common.bus.inbox import inbox_retained
from libs.common.db import Sessions, create_engine, session_transaction
from libs.common.retention import Retained, Retention
from libs.devstack.pytest_plugin import SettingsFactory
from services.attribution.store import touches_retained
from services.content.store import decisions_retained
from services.dispatch.store import finished_sends_retained
from services.journey.store import JourneyStore, finished_runs_retained
from services.profile.store import history_retained
from services.segment.store import behaviours_retained
from tests.integration.support import migrated_service_schema

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

_SERVICES = Path(services.__file__).parent
KEEP_DAYS = 30
# Smaller than the expired rows of each kind, so every kind is deleted over several batches.
BATCH_ROWS = 2
OLD = f"now() - interval '{KEEP_DAYS + 1} days'"
RECENT = f"now() - interval '{KEEP_DAYS - 1} days'"


@dataclass(frozen=True)
class Kind:
    """A kind of row kept for a period: the service whose schema holds it, its retention, the
    rows to write (each names itself in a column), and where to read those names back."""

    service: str
    retained: Callable[[str], Retained]
    rows: list[str]
    names: str
    expired: set[str]
    kept: set[str]


def _behaviour(name: str, at: str) -> str:
    return (
        "INSERT INTO {s}.behaviours (profile_id, event, occurred_at, properties) "
        f"VALUES ('p', '{name}', {at}, '{{}}')"
    )


def _history(name: str, at: str) -> str:
    return (
        "INSERT INTO {s}.profile_events (profile_id, message_id, event, kind, occurred_at, "
        f"properties) VALUES ('p', '{name}', 'e', 'track', {at}, '{{}}')"
    )


def _handled(name: str, at: str) -> str:
    return f"INSERT INTO {{s}}.inbox (consumer, event_id, handled_at) VALUES ('c', '{name}', {at})"


def _run(name: str, profile: str, run: int, status: str, at: str, goal_until: str = "NULL") -> str:
    return (
        "INSERT INTO {s}.runs (journey_id, profile_id, run, version, node_id, status, "
        "entered_at, trigger, exit_reason, goal_until, updated_at) "
        f"VALUES ('j', '{profile}', {run}, 1, 'n', '{status}', {at}, '{{}}', '{name}', "
        f"{goal_until}, {at})"
    )


def _send(name: str, status: str, at: str) -> str:
    return (
        "INSERT INTO {s}.sends (message_id, idempotency_key, event_id, request_id, profile_id, "
        "channel, template_id, template_version, journey, status, due_at, created_at) "
        f"VALUES ('{name}', 'key-{name}', 'e', 'r', 'p', 'email', 't', 1, '{{}}', '{status}', "
        f"{at}, {at})"
    )


def _decision(name: str, at: str) -> str:
    return (
        "INSERT INTO {s}.decisions (idempotency_key, request_id, profile_id, template_id, "
        f"template_version, outcome, decided_at) VALUES ('{name}', 'r', 'p', 't', 1, 'rendered', "
        f"{at})"
    )


def _reward(name: str, at: str) -> str:
    return (
        f"INSERT INTO {{s}}.rewards (message_id, kind, counted_at) VALUES ('{name}', 'trial', {at})"
    )


def _touchpoint(name: str, at: str) -> str:
    return (
        "INSERT INTO {s}.touchpoints (profile_id, message_id, outcome, channel, journey_id, "
        f"journey_version, node_id, template_id, occurred_at) VALUES ('p', '{name}', 'sent', "
        f"'email', 'j', 1, 'n', 't', {at})"
    )


def _campaign_touch(name: str, at: str) -> str:
    return (
        "INSERT INTO {s}.campaign_touches (behaviour_id, profile_id, occurred_at, channel) "
        f"VALUES ('{name}', 'p', {at}, 'paid')"
    )


KINDS = {
    "inbox": Kind(
        "segment",
        lambda schema: inbox_retained(schema, keep_hours=KEEP_DAYS * 24),
        [_handled(f"old{i}", OLD) for i in range(3)] + [_handled("recent", RECENT)],
        "SELECT event_id FROM {s}.inbox",
        {"old0", "old1", "old2"},
        {"recent"},
    ),
    "behaviours": Kind(
        "segment",
        lambda schema: behaviours_retained(schema, KEEP_DAYS),
        [_behaviour(f"old{i}", OLD) for i in range(5)] + [_behaviour("recent", RECENT)],
        "SELECT event FROM {s}.behaviours",
        {f"old{i}" for i in range(5)},
        {"recent"},
    ),
    "profile events": Kind(
        "profile",
        lambda schema: history_retained(schema, KEEP_DAYS),
        [_history(f"old{i}", OLD) for i in range(3)] + [_history("recent", RECENT)],
        "SELECT message_id FROM {s}.profile_events",
        {"old0", "old1", "old2"},
        {"recent"},
    ),
    "finished runs": Kind(
        "journey",
        lambda schema: finished_runs_retained(schema, KEEP_DAYS),
        [
            "INSERT INTO {s}.journeys (id, name, draft) VALUES ('j', 'j', '{}')",
            # Three people's earlier runs, finished long ago: gone.
            *(_run(f"old{p}", f"p{p}", 1, "completed", OLD) for p in range(3)),
            # Their latest runs: kept whatever their age (re-entry reads them) ...
            _run("latest-old", "p0", 2, "exited", OLD),
            _run("latest-recent", "p1", 2, "completed", RECENT),
            # ... and p2's latest still waits, as does an old run of p3's that never finished.
            _run("waiting", "p2", 2, "waiting", OLD),
            _run("live-old", "p3", 1, "held", OLD),
            # A finished run whose goal can still be reached, and a recent finished one.
            _run("goal-open", "p4", 1, "completed", OLD, goal_until="now() + interval '1 day'"),
            _run("recent", "p4", 2, "completed", RECENT),
            _run("p4-latest", "p4", 3, "completed", RECENT),
        ],
        "SELECT exit_reason FROM {s}.runs",
        {"old0", "old1", "old2"},
        {
            "latest-old",
            "latest-recent",
            "waiting",
            "live-old",
            "goal-open",
            "recent",
            "p4-latest",
        },
    ),
    "finished sends": Kind(
        "dispatch",
        lambda schema: finished_sends_retained(schema, KEEP_DAYS),
        [
            _send("old-sent", "sent", OLD),
            _send("old-delivered", "delivered", OLD),
            _send("old-failed", "failed", OLD),
            _send("old-suppressed", "suppressed", OLD),
            _send("old-pending", "pending", OLD),
            _send("old-sending", "sending", OLD),
            _send("recent-sent", "sent", RECENT),
        ],
        "SELECT message_id FROM {s}.sends",
        {"old-sent", "old-delivered", "old-failed", "old-suppressed"},
        {"old-pending", "old-sending", "recent-sent"},
    ),
    "decisions": Kind(
        "content",
        lambda schema: decisions_retained(schema, KEEP_DAYS),
        [_decision(f"old{i}", OLD) for i in range(3)]
        + [_decision("recent", RECENT)]
        + [_reward(f"old-reward{i}", OLD) for i in range(2)]
        + [_reward("recent-reward", RECENT)],
        "SELECT idempotency_key FROM {s}.decisions UNION ALL SELECT message_id FROM {s}.rewards",
        {"old0", "old1", "old2", "old-reward0", "old-reward1"},
        {"recent", "recent-reward"},
    ),
    "touches": Kind(
        "attribution",
        lambda schema: touches_retained(schema, KEEP_DAYS),
        [_touchpoint(f"old{i}", OLD) for i in range(3)]
        + [_touchpoint("recent", RECENT)]
        + [_campaign_touch(f"old-campaign{i}", OLD) for i in range(2)]
        + [_campaign_touch("recent-campaign", RECENT)],
        "SELECT message_id FROM {s}.touchpoints "
        "UNION ALL SELECT behaviour_id FROM {s}.campaign_touches",
        {"old0", "old1", "old2", "old-campaign0", "old-campaign1"},
        {"recent", "recent-campaign"},
    ),
}


@dataclass(frozen=True)
class Schema:
    sessions: Sessions
    engine: AsyncEngine
    name: str


@pytest_asyncio.fixture(loop_scope="session", params=sorted(KINDS), ids=sorted(KINDS))
async def kind_in_schema(
    request: pytest.FixtureRequest, settings_factory: SettingsFactory
) -> AsyncIterator[tuple[Kind, Schema]]:
    kind = KINDS[request.param]
    migrations = _SERVICES / kind.service / "migrations"
    async with migrated_service_schema(settings_factory, f"{kind.service}_kept", migrations) as (
        sessions,
        schema,
    ):
        engine = create_engine(settings_factory())
        try:
            yield kind, Schema(sessions, engine, schema)
        finally:
            await engine.dispose()


async def _names(schema: Schema, sql: str) -> set[str]:
    async with schema.engine.connect() as connection:
        result = await connection.execute(text(sql.replace("{s}", schema.name)))
        return {row[0] for row in result}


async def test_rows_past_their_period_go_and_newer_stay(
    kind_in_schema: tuple[Kind, Schema],
) -> None:
    kind, schema = kind_in_schema
    async with schema.engine.begin() as connection:
        for row in kind.rows:
            await connection.execute(text(row.replace("{s}", schema.name)))
    assert await _names(schema, kind.names) == kind.expired | kind.kept

    retention = Retention(
        schema.engine,
        schema.name,
        [kind.retained(schema.name)],
        every_seconds=3600,
        batch_rows=BATCH_ROWS,
    )
    forgotten = await retention.forget_expired()

    assert await _names(schema, kind.names) == kind.kept
    assert sum(forgotten.values()) == len(kind.expired)
    assert await retention.forget_expired() == {kind.retained(schema.name).kind: 0}


async def test_journey_evidence_periods_take_fractions_of_a_day(
    settings_factory: SettingsFactory,
) -> None:
    """The evidence upkeep's periods are days with fractions: half a day keeps eleven hours'
    messages and decisions, not thirteen hours'."""
    migrations = _SERVICES / "journey" / "migrations"
    async with migrated_service_schema(settings_factory, "journey_kept", migrations) as (
        sessions,
        schema,
    ):
        async with session_transaction(sessions) as session:
            await session.execute(
                text(f"INSERT INTO {schema}.journeys (id, name, draft) VALUES ('j', 'j', '{{}}')")
            )
            for name, hours in (("old", 13), ("recent", 11)):
                at = f"now() - interval '{hours} hours'"
                await session.execute(
                    text(
                        f"INSERT INTO {schema}.messages (request_id, profile_id, channel, "
                        f"targeted, engaged, updated_at) VALUES ('{name}', 'p', 'email', true, "
                        f"false, {at})"
                    )
                )
                await session.execute(
                    text(
                        f"INSERT INTO {schema}.decisions (journey_id, version, node_id, "
                        "profile_id, run, kind, decided_at, explored, probability) "
                        f"VALUES ('j', 1, '{name}', 'p', 1, 'channel', {at}, false, 1)"
                    )
                )
        async with session_transaction(sessions) as session:
            store = JourneyStore(session, schema)
            assert await store.forget_messages(0.5) == 1
            assert await store.forget_decisions(0.5) == 1
        async with session_transaction(sessions) as session:
            messages = await session.execute(text(f"SELECT request_id FROM {schema}.messages"))
            decisions = await session.execute(text(f"SELECT node_id FROM {schema}.decisions"))
            assert [row[0] for row in messages] == ["recent"]
            assert [row[0] for row in decisions] == ["recent"]
