"""The variant experiments over a real database, without a service process: evidence counted
with its decay, templates evaluated when due, a promotion with its insight and its lift once the
evidence has aged, and the migration that brought the contexts in."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import pytest_asyncio
from alembic import command
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

import services.content
from libs.common.db import Sessions, alembic_config, create_engine, create_sessions
from libs.devstack.pytest_plugin import SettingsFactory
from services.content.bandit import Context, fit
from services.content.evaluations import ExperimentEvaluations, NothingToEvaluate
from services.content.experiments import PolicyCache, Reward, VariantPolicy
from services.content.store import BatchStore, ContentStore, TemplateContent
from services.content.templates import TemplateVersion
from tests.integration.support import migrated_service_schema

pytestmark = pytest.mark.integration

MIGRATIONS = Path(services.content.__file__).parent / "migrations"
T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
CONTEXT = Context("active", "tea", "email", "morning").key


@dataclass
class ContentSchema:
    engine: AsyncEngine
    sessions: Sessions
    schema: str

    async def count(self, rewards: list[Reward], now: datetime) -> None:
        store = BatchStore(self.schema)
        async with self.sessions() as session, session.begin():
            connection = await store.connection(session)
            await store.count_rewards(connection, rewards, now=now, half_life_days=30)

    async def sends(
        self, template_id: str, variant_id: str, count: int, clicked: int, now: datetime
    ) -> None:
        """`count` sends of the variant in CONTEXT, the first `clicked` of them clicked."""
        rewards = []
        for index in range(count):
            message = f"msg_{uuid.uuid4().hex[:12]}"
            kinds = ("trial", "click") if index < clicked else ("trial",)
            rewards += [Reward(message, k, template_id, variant_id, CONTEXT, 1.0) for k in kinds]
        await self.count(rewards, now)


@pytest_asyncio.fixture(loop_scope="session")
async def content(settings_factory: SettingsFactory) -> AsyncIterator[ContentSchema]:
    async with migrated_service_schema(settings_factory, "content_exp", MIGRATIONS) as (
        sessions,
        schema,
    ):
        engine = create_engine(settings_factory(service_name=schema))
        try:
            yield ContentSchema(engine, sessions, schema)
        finally:
            await engine.dispose()


async def _template(content: ContentSchema, *variants: str) -> str:
    template_id = f"tpl_{uuid.uuid4().hex[:10]}"
    body = TemplateContent(
        template_id,
        "email",
        {},
        [{"id": v, "subject": v, "html": v} for v in variants],
        "clicks",
        0.0,
    )
    async with content.sessions() as session, session.begin():
        await ContentStore(session, content.schema).insert_template(template_id, body)
    return template_id


async def test_stored_evidence_is_discounted_to_each_update_before_it_grows(
    content: ContentSchema,
) -> None:
    await content.sends("tpl_decay", "a", 10, 4, T0)
    await content.sends("tpl_decay", "a", 10, 0, T0 + timedelta(days=30))
    await content.sends("tpl_decay", "a", 2, 0, T0)  # late: counted in full, the row's time kept
    async with content.sessions() as session:
        [row] = (await ContentStore(session, content.schema).evidence(["tpl_decay"]))["tpl_decay"]
    assert (row.context_key, row.variant_id) == (CONTEXT, "a")
    assert row.trials == pytest.approx(10 * 0.5 + 10 + 2)
    assert row.clicks == pytest.approx(4 * 0.5)
    assert row.updated_at == T0 + timedelta(days=30)


async def test_a_due_template_is_promoted_with_an_insight_and_lifted_once_its_evidence_aged(
    content: ContentSchema,
) -> None:
    template = await _template(content, "a", "b")
    single = await _template(content, "only")
    await content.sends(template, "a", 60, 30, T0)
    await content.sends(template, "b", 60, 0, T0)
    clock = [T0]
    policies = PolicyCache(60)
    version = TemplateVersion(template, 1, "email", {}, [{"id": "a"}, {"id": "b"}], "clicks", 0)
    policies.keep(version, VariantPolicy(template, fit({}, ["a", "b"]), promoted=False))
    evaluations = ExperimentEvaluations(
        content.engine,
        content.schema,
        policies,
        interval_seconds=3600,
        half_life_days=30,
        clock=lambda: clock[0],
    )

    assert await evaluations.work_due() == 1  # the single-variant template has no experiment
    assert policies.get(version) is None  # the next request chooses with the promotion
    async with content.sessions() as session:
        store = ContentStore(session, content.schema)
        experiment = await store.experiment(template)
        [promoted] = await store.insights(template, 10)
    assert experiment is not None and experiment.promoted_at == T0 and experiment.winner == "a"
    assert promoted.insight.kind == "variant_promoted"
    assert await evaluations.work_due() == 0  # evaluated within the hour

    clock[0] = T0 + timedelta(hours=2)
    assert await evaluations.work_due() == 1
    clock[0] = T0 + timedelta(days=300)  # ten half-lives: the evidence is all but gone
    evaluated = await evaluations.evaluate_now(template)
    assert evaluated is not None and evaluated.experiment.promoted_at is None
    assert evaluated.insight is not None and evaluated.insight.insight.kind == "promotion_lifted"
    async with content.sessions() as session:
        found = await ContentStore(session, content.schema).insights(None, 10)
    assert [(i.insight.template_id, i.insight.kind) for i in found] == [
        (template, "promotion_lifted"),
        (template, "variant_promoted"),
    ]
    assert await evaluations.evaluate_now("tpl_missing") is None
    with pytest.raises(NothingToEvaluate):
        await evaluations.evaluate_now(single)


async def test_per_variant_counts_carry_over_to_the_context_of_unlogged_sends(
    settings_factory: SettingsFactory,
) -> None:
    settings = settings_factory(service_name=f"content_carry_{uuid.uuid4().hex[:8]}")
    config = alembic_config(settings, MIGRATIONS)
    schema = settings.schema_name
    engine = create_engine(settings)
    try:
        await asyncio.to_thread(command.upgrade, config, "0002")
        async with engine.begin() as connection:
            await connection.execute(
                text(
                    f"INSERT INTO {schema}.templates (id, name, channel, version) "
                    "VALUES ('tpl_old', 'old', 'sms', 1)"
                )
            )
            await connection.execute(
                text(f"INSERT INTO {schema}.variant_stats VALUES ('tpl_old', 'a', 40, 3, 0.5)")
            )
        await asyncio.to_thread(command.upgrade, config, "head")
        async with create_sessions(engine)() as session:
            [row] = (await ContentStore(session, schema).evidence(["tpl_old"]))["tpl_old"]
        assert row.context_key == Context(None, None, "sms", "").key
        assert (row.variant_id, row.trials, row.clicks, row.conversions) == ("a", 40, 3, 0.5)
        await asyncio.to_thread(command.downgrade, config, "0002")
        async with engine.begin() as connection:
            stats = (await connection.execute(text(f"SELECT * FROM {schema}.variant_stats"))).all()
        assert [tuple(r) for r in stats] == [("tpl_old", "a", 40, 3, 0.5)]
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
        await engine.dispose()
