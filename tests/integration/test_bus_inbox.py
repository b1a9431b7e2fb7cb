"""The inbox claim: which of a batch's events are new, in order, each once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.bus.inbox import claim_new_events
from libs.common.bus.tables import create_bus_schema
from libs.common.db import create_engine, create_sessions
from libs.common.events import BehaviorOccurred, Event
from libs.common.settings import Settings
from libs.devstack.stack import Stack
from tests.events import behaviour

pytestmark = pytest.mark.integration

CONSUMER = "closeloop-tests"


@pytest_asyncio.fixture(loop_scope="session")
async def inbox(stack: Stack) -> AsyncIterator[tuple[AsyncSession, str]]:
    """A session in a transaction over a schema holding only an inbox and an outbox."""
    settings = Settings(
        service_name=f"inbox_{uuid.uuid4().hex[:10]}", database_url=stack.database_url
    )
    engine = create_engine(settings)
    await create_bus_schema(engine, settings.schema_name)
    try:
        async with create_sessions(engine)() as session, session.begin():
            yield session, settings.schema_name
    finally:
        async with engine.begin() as connection:
            await connection.execute(text(f"DROP SCHEMA {settings.schema_name} CASCADE"))
        await engine.dispose()


def _event(event_id: str) -> Event[BehaviorOccurred]:
    return behaviour("prf_1", "viewed", event_id=event_id)


async def test_a_batch_of_new_events_is_all_new_in_order(inbox: tuple[AsyncSession, str]) -> None:
    session, schema = inbox
    events = [_event(f"e{i}") for i in (3, 1, 2)]
    assert await claim_new_events(session, schema, CONSUMER, events) == events


async def test_an_id_twice_in_one_batch_is_new_once_as_its_first_copy(
    inbox: tuple[AsyncSession, str],
) -> None:
    session, schema = inbox
    first, other, again = _event("e1"), _event("e2"), _event("e1")
    fresh = await claim_new_events(session, schema, CONSUMER, [first, other, again])
    assert [id(event) for event in fresh] == [id(first), id(other)]


async def test_events_seen_before_are_left_out(inbox: tuple[AsyncSession, str]) -> None:
    session, schema = inbox
    await claim_new_events(session, schema, CONSUMER, [_event("e1"), _event("e3")])
    batch = [_event(f"e{i}") for i in range(1, 5)]
    fresh = await claim_new_events(session, schema, CONSUMER, batch)
    assert [event.id for event in fresh] == ["e2", "e4"]
    assert await claim_new_events(session, schema, "closeloop-another", batch) == batch
