"""The seven services as real processes, for hostile input: the closed loop's fixture, reused.

`loop` is tests/integration/closed_loop's package fixture (all seven services in schemas and
consumer groups of their own, fake providers, warmed up until a call goes round); `hostile`
adds what these tests need besides: the run's schema and consumer group of every service, and
a direct connection to PostgreSQL.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
import pytest_asyncio

from libs.common.events import catalog
from libs.devstack.stack import Stack
from tests.integration.closed_loop.conftest import loop
from tests.integration.closed_loop.harness import ClosedLoop

SERVICES = ("ingest", "profile", "segment", "journey", "content", "dispatch", "attribution")


@dataclass
class Hostile:
    """The running loop, the stack under it, and the names its processes were given."""

    loop: ClosedLoop
    stack: Stack
    run: str
    database: asyncpg.Connection

    def schema(self, service: str) -> str:
        return self.loop.processes[service].name.replace("-", "_")

    def group(self, service: str) -> str:
        return f"closeloop-{self.loop.processes[service].name}"

    def consumers_of(self, topic: str) -> tuple[str, ...]:
        """The services reading `topic`, as the event catalogue records them."""
        return next(t.consumers for t in catalog.TOPICS if t.name == topic)


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def hostile(loop: ClosedLoop, stack: Stack) -> AsyncIterator[Hostile]:
    run = loop.processes["ingest"].name.removeprefix("ingest_")
    dsn = stack.database_url.replace("postgresql+asyncpg://", "postgresql://")
    database = await asyncpg.connect(dsn)
    try:
        yield Hostile(loop, stack, run, database)
    finally:
        await database.close()


__all__ = ["Hostile", "hostile", "loop"]
