"""The services' engine: each statement planned for its arguments (decision 0013), and json
and jsonb values read back exactly as PostgreSQL holds them."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common import db
from libs.common.settings import Settings
from libs.devstack.stack import Stack

pytestmark = pytest.mark.integration


@pytest_asyncio.fixture(loop_scope="session")
async def engine(stack: Stack) -> AsyncIterator[AsyncEngine]:
    engine = db.create_engine(Settings(database_url=stack.database_url, service_name="engine"))
    try:
        yield engine
    finally:
        await engine.dispose()


async def test_every_service_connection_plans_each_execution(engine: AsyncEngine) -> None:
    """asyncpg prepares every statement; PostgreSQL's default may keep a generic plan made
    while a table was small."""
    async with engine.connect() as connection:
        mode = (await connection.execute(text("SHOW plan_cache_mode"))).scalar_one()
    assert mode == "force_custom_plan"


@pytest.mark.parametrize("cast", ["json", "jsonb"])
async def test_json_values_read_back_whole_even_where_orjson_would_refuse(
    engine: AsyncEngine, cast: str
) -> None:
    """orjson, faster than `json`, would read integers beyond 64 bits as floats (measured
    2026-12-06: a jsonb run row parsed in 0.7 µs against 2.3 µs, but a guard for long numbers
    made it 4.3 µs), so the engine keeps SQLAlchemy's `json.loads`."""
    document = (
        '{"plan": "gold", "visits": [1, 2.5, null, true], "nested": {"emoji": "\\u00e9\\ud83d'
        '\\ude00"}, "big": 123456789012345678901234567890, "negative": -9223372036854775809}'
    )
    async with engine.connect() as connection:
        value = (
            await connection.execute(
                text(f"SELECT CAST(:document AS {cast})"), {"document": document}
            )
        ).scalar_one()
    assert value == {
        "plan": "gold",
        "visits": [1, 2.5, None, True],
        "nested": {"emoji": "é😀"},
        "big": 123456789012345678901234567890,
        "negative": -9223372036854775809,
    }
