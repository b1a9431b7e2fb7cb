"""A running segment service deletes, on its own, behaviours past their period and the ids of
events its inbox handled past theirs: the retention loop is wired into the process."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from libs.common.db import create_engine
from libs.devstack.pytest_plugin import SettingsFactory
from libs.devstack.stack import Stack
from tests.events import behaviour
from tests.integration.support import publish, started_service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_the_service_forgets_old_behaviours_and_handled_ids(
    stack: Stack, tmp_path: Path, settings_factory: SettingsFactory
) -> None:
    env = {
        "CLOSELOOP_SEGMENT_BEHAVIOUR_RETENTION_DAYS": "1",
        # A second's topics and two seconds' inbox: long enough to see the ids go in, and gone.
        "CLOSELOOP_TOPIC_RETENTION_HOURS": str(1 / 3600),
        "CLOSELOOP_INBOX_RETENTION_HOURS": str(2 / 3600),
        "CLOSELOOP_RETENTION_INTERVAL_S": "0.5",
        "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000",
    }
    engine = create_engine(settings_factory())
    async with started_service(stack, tmp_path, "segment", env) as (_, run):
        schema, profile = f"segment_{run}", f"prf_kept_{run}"
        old = behaviour(profile, "viewed_long_ago", at=datetime.now(UTC) - timedelta(days=2))
        recent = behaviour(profile, "viewed_just_now")
        await publish(stack.kafka_bootstrap, [old, recent])

        async def rows(sql: str) -> set[str]:
            async with engine.connect() as connection:
                result = await connection.execute(text(sql), {"profile": profile})
                return {row[0] for row in result}

        async def only_the_recent_behaviour_is_kept() -> bool:
            kept = f"SELECT event FROM {schema}.behaviours WHERE profile_id = :profile"
            return await rows(kept) == {"viewed_just_now"}

        async def handled_ids_forgotten() -> bool:
            return not await rows(f"SELECT event_id FROM {schema}.inbox") & {old.id, recent.id}

        await wait_for(only_the_recent_behaviour_is_kept, within=90, what="the old behaviour gone")
        await wait_for(handled_ids_forgotten, within=30, what="the handled ids forgotten")
    await engine.dispose()
