"""Runs the counter test service as a real process on the test stack, and reads its state."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from libs.common.bus import ensure_topics
from libs.common.events import Event
from libs.common.events.behavior import BehaviorOccurred
from libs.devstack import free_port
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack


class CounterHarness:
    """One counter service with its own schema, consumer group and input topic."""

    def __init__(self, stack: Stack, log_dir: Path, **settings: Any) -> None:
        self.run_id = uuid.uuid4().hex[:10]
        self.name = f"counter_{self.run_id}"
        self.group = f"closeloop-{self.name}"
        self.input_topic = f"closeloop.test.counter-{self.run_id}"
        self.stack = stack
        self._log_dir = log_dir
        self._port = free_port()
        self._env = {
            **stack.env(),
            "CLOSELOOP_COUNTER_TOPICS": json.dumps([self.input_topic]),
            "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000",
        }
        self.process = self._process(**settings)

    def _process(self, **settings: Any) -> ServiceProcess:
        self._env.update(
            {f"CLOSELOOP_{key.upper()}": str(value) for key, value in settings.items()}
        )
        return ServiceProcess(
            self.name,
            "tests.integration.counter_service",
            self._env,
            self._port,
            log_dir=self._log_dir,
        )

    async def redeploy(self, **settings: Any) -> None:
        """Stop the service and start it again with changed settings."""
        await self.process.stop()
        self.process = self._process(**settings)
        self.process.start()
        await self.process.wait_ready(timeout=60)

    @property
    def dsn(self) -> str:
        return self.stack.database_url.replace("postgresql+asyncpg://", "postgresql://")

    async def start(self) -> None:
        await ensure_topics(self.stack.kafka_bootstrap, [self.input_topic], 12, 1)
        await self.process.migrate()
        self.process.start()
        await self.process.wait_ready(timeout=60)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        connection = await asyncpg.connect(self.dsn)
        try:
            return await connection.fetchval(sql.replace("{schema}", self.name), *args)
        finally:
            await connection.close()

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        connection = await asyncpg.connect(self.dsn)
        try:
            return await connection.fetch(sql.replace("{schema}", self.name), *args)
        finally:
            await connection.close()

    async def events_applied(self) -> int:
        return int(await self.fetchval("SELECT coalesce(sum(events), 0) FROM {schema}.counters"))

    async def totals(self) -> dict[str, int]:
        rows = await self.fetch("SELECT profile_id, total FROM {schema}.counters")
        return {row["profile_id"]: row["total"] for row in rows}

    async def outbox_backlog(self) -> int:
        return int(await self.fetchval("SELECT coalesce(sum(events), 0) FROM {schema}.outbox"))

    async def transaction_open(self) -> bool:
        """Whether the service holds a database transaction open right now (a batch in flight)."""
        count = await self.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 "
            "AND state = 'idle in transaction'",
            f"closeloop-{self.name}",
        )
        return bool(count)

    def behaviour(self, index: int, profiles: int, **properties: Any) -> Event[BehaviorOccurred]:
        profile = f"{self.run_id}-p{index % profiles}"
        now = datetime.now(UTC)
        return Event(
            data=BehaviorOccurred(
                profile_id=profile,
                event="order_completed",
                kind="track",
                properties={"amount": index % 7 + 1, **properties},
                occurred_at=now,
                received_at=now,
                message_id=f"{self.run_id}-{index}",
            ),
            key=profile,
            source="closeloop/tests",
        )
