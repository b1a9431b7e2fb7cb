"""The loop benchmark's statement report: an embedded PostgreSQL started with options loads
pg_stat_statements, and the report counts each statement per track."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest

from bench import pg_statements
from libs.devstack.postgres import EmbeddedPostgres

pytestmark = pytest.mark.integration


async def test_statements_are_counted_per_track_from_the_reset_on(tmp_path: Path) -> None:
    async with EmbeddedPostgres(
        tmp_path / "pgdata", fast=True, options=pg_statements.POSTGRES_OPTIONS
    ) as database:
        connection = await asyncpg.connect(database.dsn)
        try:
            await connection.execute("CREATE TABLE items (id int)")
            await connection.execute("INSERT INTO items VALUES (1)")  # before the reset
            await pg_statements.reset(database.dsn)
            for number in range(20):
                await connection.execute("INSERT INTO items VALUES ($1)", number)
        finally:
            await connection.close()
        costs = await pg_statements.costliest(database.dsn, tracks=10)
    [insert] = [cost for cost in costs if cost.query.startswith("INSERT INTO items")]
    assert (insert.calls, insert.rows) == (2.0, 2.0)
    assert insert.time_us > 0
    lines = pg_statements.statement_lines(costs)
    assert any("INSERT INTO items" in line for line in lines[1:])
