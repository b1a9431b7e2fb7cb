"""Drives an attribution service process over the test stack: its API, its input and output."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common import topics
from libs.common.events import ConversionAttributed, Event, JourneyRef
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests import events
from tests.integration.support import publish, read_events

SOURCE = "closeloop/tests/attribution"


def sent(
    profile_id: str, message_id: str, journey_id: str, occurred_at: datetime, **extra: Any
) -> Event[Any]:
    return events.sent(profile_id, **_outcome(message_id, journey_id, occurred_at), **extra)


def clicked(profile_id: str, message_id: str, journey_id: str, occurred_at: datetime) -> Event[Any]:
    fields = _outcome(message_id, journey_id, occurred_at)
    return events.clicked(profile_id, url="https://shop.example.com/p/tea", **fields)


def _outcome(message_id: str, journey_id: str, occurred_at: datetime) -> dict[str, Any]:
    """A message of the journey's one send step, with variant `var_a` of its template."""
    return {
        "message_id": message_id,
        "journey": JourneyRef(journey_id=journey_id, journey_version=1, node_id="node_send"),
        "template_id": f"tpl_{journey_id}",
        "template_version": 1,
        "variant_id": "var_a",
        "at": occurred_at,
        "source": SOURCE,
    }


def campaign_visit(
    profile_id: str, occurred_at: datetime, source: str, medium: str, name: str = "spring"
) -> Event[Any]:
    """A page view that arrived with UTM tags in Segment's `context.campaign`."""
    return events.behaviour(
        profile_id,
        "Landing",
        kind="page",
        context={"campaign": {"source": source, "medium": medium, "name": name}},
        at=occurred_at,
        received_at=datetime.now(UTC),
        source=SOURCE,
    )


class AttributionHarness:
    """One running attribution service: its HTTP API as the admin, what it published, its rows."""

    def __init__(self, stack: Stack, process: ServiceProcess) -> None:
        self.stack = stack
        self.process = process
        self.schema = process.name
        self.http = httpx.AsyncClient(
            base_url=process.url,
            headers={"Authorization": f"Bearer {stack.admin_token}"},
            timeout=30.0,
        )
        self._engine = create_async_engine(stack.database_url)

    async def publish(self, *events: Event[Any]) -> None:
        await publish(self.stack.kafka_bootstrap, events)

    async def define(self, conversion_id: str, event: str, **fields: Any) -> dict[str, Any]:
        body = {"id": conversion_id, "name": conversion_id, "event": event, **fields}
        response = await self.http.post("/conversions", json=body)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    async def credits(
        self, profile_id: str, conversion_name: str | None = None
    ) -> list[ConversionAttributed]:
        """The conversion.attributed events published for a profile (and conversion)."""
        found = []
        for _, event in await read_events(self.stack.kafka_bootstrap, topics.ATTRIBUTION):
            data = event.data
            if not isinstance(data, ConversionAttributed) or data.profile_id != profile_id:
                continue
            if conversion_name is None or data.conversion_name == conversion_name:
                found.append(data)
        return found

    async def conversion_totals(self, definition_id: str) -> dict[str, Any] | None:
        response = await self.http.get("/reports/journey")
        response.raise_for_status()
        for totals in response.json()["conversions"]:
            if totals["definition_id"] == definition_id:
                result: dict[str, Any] = totals
                return result
        return None

    async def rows_of(self, profile_id: str) -> int:
        """How many touchpoint, campaign touch and conversion rows name the profile."""
        return await self._count(
            f"SELECT (SELECT count(*) FROM {self.schema}.touchpoints WHERE profile_id = :p)"
            f" + (SELECT count(*) FROM {self.schema}.campaign_touches WHERE profile_id = :p)"
            f" + (SELECT count(*) FROM {self.schema}.conversions WHERE profile_id = :p)",
            profile_id,
        )

    async def touchpoints_of(self, profile_id: str) -> int:
        """How many outcomes attribution has recorded for the profile."""
        return await self._count(
            f"SELECT count(*) FROM {self.schema}.touchpoints WHERE profile_id = :p", profile_id
        )

    async def _count(self, sql: str, profile_id: str) -> int:
        async with self._engine.connect() as connection:
            result = await connection.execute(text(sql), {"p": profile_id})
            return int(result.scalar_one())

    async def aclose(self) -> None:
        await self.http.aclose()
        await self._engine.dispose()
