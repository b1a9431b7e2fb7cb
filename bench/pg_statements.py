"""What PostgreSQL spends per track, statement by statement (`LOOP_PG_STATEMENTS=1`).

The loop's PostgreSQL then starts with `pg_stat_statements` loaded; its counters are reset
before the load and read after the drain. The execution time is wall time in the server,
so on a saturated machine it includes waiting for a core; the ranking is what it is for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import asyncpg

POSTGRES_OPTIONS = ("shared_preload_libraries=pg_stat_statements", "pg_stat_statements.track=all")
_TOP = 15
_QUERY_CHARS = 110
_SPACES = re.compile(r"\s+")
_COSTS = f"""
    SELECT query, calls, rows, total_exec_time, total_plan_time, wal_bytes, shared_blks_hit
    FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT {_TOP}
"""


@dataclass(frozen=True)
class StatementCost:
    """One statement's figures per track: executions, rows, server time (µs), WAL (bytes) and
    buffers read from shared memory."""

    query: str
    calls: float
    rows: float
    time_us: float
    wal_bytes: float
    buffers: float


async def reset(dsn: str) -> None:
    connection = await asyncpg.connect(dsn)
    try:
        await connection.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        await connection.execute("SELECT pg_stat_statements_reset()")
    finally:
        await connection.close()


async def costliest(dsn: str, tracks: int) -> list[StatementCost]:
    """The statements that took the most server time since `reset`, per track."""
    connection = await asyncpg.connect(dsn)
    try:
        rows = await connection.fetch(_COSTS)
    finally:
        await connection.close()
    return [
        StatementCost(
            query=_SPACES.sub(" ", row["query"])[:_QUERY_CHARS],
            calls=row["calls"] / tracks,
            rows=row["rows"] / tracks,
            time_us=(row["total_exec_time"] + row["total_plan_time"]) * 1e3 / tracks,
            wal_bytes=float(row["wal_bytes"]) / tracks,
            buffers=row["shared_blks_hit"] / tracks,
        )
        for row in rows
    ]


def statement_lines(costs: list[StatementCost]) -> list[str]:
    """A line per statement, costliest first."""
    header = (
        f"{'µs':>7} {'calls':>6} {'rows':>6} {'WAL B':>6} {'buffers':>7}  statement (per track)"
    )
    return [header] + [
        f"{c.time_us:>7.1f} {c.calls:>6.3f} {c.rows:>6.2f} {c.wal_bytes:>6.0f} {c.buffers:>7.1f}"
        f"  {c.query}"
        for c in costs
    ]
