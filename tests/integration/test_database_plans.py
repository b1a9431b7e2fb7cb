"""The services' connections plan each statement for its arguments and its tables as they are
now, instead of keeping the generic plan PostgreSQL may settle on after five executions of a
prepared statement (decision 0013)."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from libs.common import db
from libs.common.settings import Settings
from libs.devstack.stack import Stack

pytestmark = pytest.mark.integration


async def test_every_service_connection_plans_each_execution(stack: Stack) -> None:
    engine = db.create_engine(Settings(database_url=stack.database_url, service_name="plans"))
    try:
        async with engine.connect() as connection:
            mode = (await connection.execute(text("SHOW plan_cache_mode"))).scalar_one()
    finally:
        await engine.dispose()
    assert mode == "force_custom_plan"
