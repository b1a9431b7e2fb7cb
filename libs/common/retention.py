"""Retention: rows past the period a service keeps them for are deleted, a batch at a time.

Each service names what it keeps for a period (`Retained`: the inbox for all, its behaviours,
finished runs or finished sends for some); one loop per process deletes each kind in batches of
`retention_batch_rows`, one short transaction per batch, so a large backlog never holds locks or
a snapshot for long. Periods, and why each is what it is: docs/operations.md, *Retention*.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from libs.common import metrics
from libs.common.db import create_sessions, session_transaction
from libs.common.lifecycle import BackgroundLoop

_log = logging.getLogger(__name__)

# Deletes at most `limit` expired rows in the caller's transaction; returns how many it deleted.
ForgetBatch = Callable[[AsyncSession, int], Awaitable[int]]


@dataclass(frozen=True)
class Retained:
    """One kind of row kept for a period: `forget` deletes a batch of those past it."""

    kind: str
    forget: ForgetBatch


class Retention(BackgroundLoop):
    """Every `every_seconds`, from start-up on: each kind's expired rows deleted, in batches.

    A kind is emptied of what has expired before the next one starts; a kind that fails (the
    database away) is logged and tried again at the next pass, the others still run.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        schema: str,
        kinds: Sequence[Retained],
        *,
        every_seconds: float,
        batch_rows: int,
    ) -> None:
        self.name = f"retention:{schema}"
        self._schema = schema
        self._sessions = create_sessions(engine)
        self._kinds: list[Retained] = []
        self._every_seconds = every_seconds
        self._batch_rows = batch_rows
        self.keep(*kinds)

    def keep(self, *kinds: Retained) -> None:
        """Add kinds of row (before start): a service adds its own to the bus's inbox."""
        for kind in kinds:
            # Exported at zero from the start, so an alert on them has data before any failure.
            metrics.RETENTION_DELETED.labels(self._schema, kind.kind)
            metrics.RETENTION_FAILURES.labels(self._schema, kind.kind)
        self._kinds.extend(kinds)

    async def forget_expired(self) -> dict[str, int]:
        """One pass: every kind's expired rows deleted; how many of each."""
        forgotten: dict[str, int] = {}
        for kind in self._kinds:
            try:
                forgotten[kind.kind] = await self._forget_all(kind)
            except Exception:
                metrics.RETENTION_FAILURES.labels(self._schema, kind.kind).inc()
                _log.exception("retention failed; will try again", extra={"kind": kind.kind})
        return forgotten

    async def _forget_all(self, kind: Retained) -> int:
        total = 0
        while True:
            async with session_transaction(self._sessions) as session:
                deleted = await kind.forget(session, self._batch_rows)
            total += deleted
            metrics.RETENTION_DELETED.labels(self._schema, kind.kind).inc(deleted)
            if deleted < self._batch_rows:
                return total

    async def _run(self) -> None:
        while True:
            forgotten = {
                kind: count for kind, count in (await self.forget_expired()).items() if count
            }
            if forgotten:
                _log.info("expired rows forgotten", extra={"forgotten": forgotten})
            await asyncio.sleep(self._every_seconds)


def batched_delete(table: str, expired: str, *, limit: str = ":limit") -> str:
    """A store's statement deleting at most `limit` (a bind parameter) rows of `{s}.<table>` for
    which `expired` (SQL over the table as `t`) holds. Rows another transaction holds (a
    handler's, or another replica's retention) are skipped, not waited for: they go next time.
    The condition is repeated outside the subquery, so a row changed since the subquery read it
    goes only if it still has expired."""
    return (
        f"DELETE FROM {{s}}.{table} t WHERE t.ctid = ANY(ARRAY("
        f"SELECT t.ctid FROM {{s}}.{table} t WHERE {expired} LIMIT {limit} "
        f"FOR UPDATE SKIP LOCKED)) AND {expired}"
    )


def older_than(column: str) -> str:
    """`expired` for rows whose `column` is more than `:seconds` ago."""
    return f"t.{column} < now() - make_interval(secs => :seconds)"
