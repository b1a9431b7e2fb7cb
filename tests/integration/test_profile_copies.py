"""Journey's and segment's copies of profiles: a batch that changes nothing about a profile
does not write its row again; one that changes it does."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text

import services.journey
import services.segment
from libs.devstack.pytest_plugin import SettingsFactory
from services.journey.profiles import apply_change as journey_apply_change
from services.journey.store import JourneyStore
from services.segment.rules import apply_change as segment_apply_change
from services.segment.store import SegmentStore
from tests.integration.support import migrated_service_schema

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Service:
    name: str
    migrations: Path
    store: Any  # JourneyStore or SegmentStore: the same profile methods
    apply_change: Any


SERVICES = [
    Service(
        "journey",
        Path(services.journey.__file__).parent / "migrations",
        JourneyStore,
        journey_apply_change,
    ),
    Service(
        "segment",
        Path(services.segment.__file__).parent / "migrations",
        SegmentStore,
        segment_apply_change,
    ),
]


@pytest_asyncio.fixture(loop_scope="session", params=SERVICES, ids=lambda s: s.name)
async def service(
    request: pytest.FixtureRequest, settings_factory: SettingsFactory
) -> AsyncIterator[tuple[Service, Any, str]]:
    chosen: Service = request.param
    name = f"{chosen.name}_copies"
    async with migrated_service_schema(settings_factory, name, chosen.migrations) as (
        sessions,
        schema,
    ):
        yield chosen, sessions, schema


async def _batch(service: tuple[Service, Any, str], change: tuple[str, Any] | None) -> str:
    """One batch about `prf_1`: lock, maybe change, save. The row's xmin after it."""
    chosen, sessions, schema = service
    async with sessions() as session, session.begin():
        store = chosen.store(session, schema)
        profiles = await store.lock_profiles(["prf_1"])
        if change is not None:
            chosen.apply_change(profiles["prf_1"], *change)
        await store.save_profiles(profiles.values())
    async with sessions() as session:
        row = (
            await session.execute(
                text(f"SELECT xmin::text, traits FROM {schema}.profiles WHERE profile_id = 'prf_1'")
            )
        ).one()
    return f"{row[0]} {row[1]}"


async def test_a_profile_is_written_only_when_its_facts_change(
    service: tuple[Service, Any, str],
) -> None:
    created = await _batch(service, ("traits.plan", "premium"))
    assert created.endswith("{'plan': 'premium'}")
    assert await _batch(service, None) == created  # the same transaction id: not written
    assert await _batch(service, ("traits.plan", "premium")) == created  # the same value
    changed = await _batch(service, ("traits.plan", "basic"))
    assert changed.endswith("{'plan': 'basic'}") and changed != created
    removed = await _batch(service, ("traits.plan", None))
    assert removed.endswith("{}") and removed != changed
