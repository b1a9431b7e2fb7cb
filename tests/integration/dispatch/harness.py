"""Drives a dispatch service process: its API, rendered messages in, outcomes out."""

from __future__ import annotations

from typing import Any

import asyncpg
import httpx

from libs.common import topics
from libs.common.events import (
    Event,
)
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.support import publish, read_events


class DispatchHarness:
    def __init__(self, stack: Stack, process: ServiceProcess) -> None:
        self.stack = stack
        self.process = process
        self.http = httpx.AsyncClient(
            base_url=process.url,
            headers={"Authorization": f"Bearer {stack.admin_token}"},
            timeout=30.0,
        )
        self.public = httpx.AsyncClient(base_url=process.url, timeout=30.0)

    async def publish(self, *events: Event[Any]) -> None:
        await publish(self.stack.kafka_bootstrap, events)

    async def channel(self, name: str, kind: str, config: dict[str, Any], **extra: Any) -> None:
        response = await self.http.post(
            "/channels", json={"name": name, "kind": kind, "config": config, **extra}
        )
        assert response.status_code == 201, response.text

    async def outcomes(self, *request_ids: str) -> list[Any]:
        """Outcome events (data) of these requests' messages, in the order published."""
        wanted = set(request_ids)
        found = []
        for _, event in await read_events(self.stack.kafka_bootstrap, topics.OUTCOMES):
            if getattr(event.data, "request_id", None) in wanted:
                found.append(event.data)
        return found

    async def ledger_row(self, idempotency_key: str) -> asyncpg.Record | None:
        """The send-ledger row of a message (read from the service's schema)."""
        dsn = self.stack.database_url.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(dsn)
        try:
            row: asyncpg.Record | None = await connection.fetchrow(
                "SELECT profile_id, status, recipient, body, time_zone "
                f"FROM {self.process.name}.sends WHERE idempotency_key = $1",
                idempotency_key,
            )
        finally:
            await connection.close()
        return row

    async def consumed(self, event_type: str) -> float:
        """How many events of the type the service's consumer has handled, from its metrics."""
        response = await self.http.get("/metrics")
        response.raise_for_status()
        label = f'type="{event_type}"'
        return sum(
            float(line.rpartition(" ")[2])
            for line in response.text.splitlines()
            if line.startswith("closeloop_events_consumed_total{") and label in line
        )

    async def outcome_types(self, *request_ids: str) -> list[str]:
        return [data.event_type for data in await self.outcomes(*request_ids)]

    async def aclose(self) -> None:
        await self.http.aclose()
        await self.public.aclose()
