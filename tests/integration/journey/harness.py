"""Drives a journey service process over the test stack: its API, its input and its output."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from libs.common import topics
from libs.common.bus.reader import header
from libs.common.events import (
    Event,
    JourneyRef,
    MessageRequested,
    MessageSent,
    ProfileChangeRequested,
)
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests import events
from tests.integration.support import publish, read_events, wait_for

SOURCE = "closeloop/tests/journey"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


# The journey step of messages sent before a test's journey existed.
PAST_SEND = JourneyRef(journey_id="jrn_past", journey_version=1, node_id="past_send")


def past_message(
    profile_id: str, channel: str, sent_at: datetime, *, engaged_at: datetime | None = None
) -> list[Event[Any]]:
    """The outcomes of a message sent at `sent_at` (and opened at `engaged_at`), as dispatch
    would announce them."""
    fields: dict[str, Any] = {
        "message_id": unique("msg"),
        "request_id": unique("req"),
        "channel": channel,
        "journey": PAST_SEND,
        "template_id": "tpl_past",
    }
    outcomes: list[Event[Any]] = [events.sent(profile_id, **fields, at=sent_at, source=SOURCE)]
    if engaged_at is not None:
        outcomes.append(events.opened(profile_id, **fields, at=engaged_at, source=SOURCE))
    return outcomes


def send(node_id: str, template: str, next_node: str | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"type": "send", "channel": "email", "template_id": template}
    if next_node is not None:
        node["next"] = next_node
    return node


class Requested:
    """One message.requested read back: its event id, time and data."""

    def __init__(self, event_id: str, time: str, data: MessageRequested) -> None:
        self.event_id = event_id
        self.time = datetime.fromisoformat(time)
        self.data = data


class JourneyHarness:
    """One running journey service: its HTTP API as the admin, what it published, its rows."""

    def __init__(self, stack: Stack, process: ServiceProcess, segment_url: str = "") -> None:
        self.stack = stack
        self.process = process
        self.segment_url = segment_url
        self.content_url = ""
        self.http = httpx.AsyncClient(
            base_url=process.url,
            headers={"Authorization": f"Bearer {stack.admin_token}"},
            timeout=30.0,
        )
        self.schema = process.name
        self._engine = create_async_engine(stack.database_url)

    async def publish(self, *events: Event[Any]) -> None:
        await publish(self.stack.kafka_bootstrap, events)

    async def create(self, journey_id: str, graph: dict[str, Any]) -> httpx.Response:
        return await self.http.post(
            "/journeys", json={"id": journey_id, "name": journey_id, **graph}
        )

    async def create_and_publish(self, journey_id: str, graph: dict[str, Any]) -> None:
        created = await self.create(journey_id, graph)
        assert created.status_code == 201, created.text
        published = await self.http.post(f"/journeys/{journey_id}/publish")
        assert published.status_code == 200, published.text

    async def stats(self, journey_id: str) -> dict[str, Any]:
        response = await self.http.get(f"/journeys/{journey_id}/stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def requested(self, journey_id: str) -> list[Requested]:
        """The journey's message.requested events, in the order published per partition."""
        found = []
        for record, event in await read_events(self.stack.kafka_bootstrap, topics.REQUESTS):
            data = event.data
            if isinstance(data, MessageRequested) and data.journey.journey_id == journey_id:
                found.append(Requested(event.id, header(record, "ce_time"), data))
        return found

    async def change_requests(self, journey_id: str) -> list[ProfileChangeRequested]:
        """The journey's profile.change_requested events on ingest.v1."""
        found = []
        for _, event in await read_events(self.stack.kafka_bootstrap, topics.INGEST):
            data = event.data
            if not isinstance(data, ProfileChangeRequested):
                continue
            if data.journey is not None and data.journey.journey_id == journey_id:
                found.append(data)
        return found

    async def decisions(self, journey_id: str, profile_id: str) -> list[dict[str, Any]]:
        response = await self.http.get(
            f"/journeys/{journey_id}/decisions", params={"profile_id": profile_id}
        )
        response.raise_for_status()
        found: list[dict[str, Any]] = response.json()["decisions"]
        return found

    async def timer_due(self, journey_id: str, profile_id: str) -> datetime | None:
        """When the profile's run of the journey wakes (its durable timer), if it waits."""
        async with self._engine.connect() as connection:
            due: datetime | None = await connection.scalar(
                text(
                    f"SELECT due_at FROM {self.schema}.timers "
                    "WHERE journey_id = :j AND profile_id = :p"
                ),
                {"j": journey_id, "p": profile_id},
            )
        return due

    async def run_of(self, journey_id: str, profile_id: str) -> dict[str, Any]:
        """The profile's first run of the journey: its status, trigger and timing, as stored."""
        async with self._engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        f"SELECT status, trigger, timing FROM {self.schema}.runs "
                        "WHERE journey_id = :j AND profile_id = :p AND run = 1"
                    ),
                    {"j": journey_id, "p": profile_id},
                )
            ).one()
        return {"status": row.status, "trigger": row.trigger, "timing": row.timing}

    async def members(self, segment_id: str) -> set[str]:
        """The segment's members as journey heard them (its memberships table)."""
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                text(f"SELECT profile_id FROM {self.schema}.memberships WHERE segment_id = :s"),
                {"s": segment_id},
            )
        return {row.profile_id for row in rows}

    async def enrolments(self, journey_id: str) -> list[str]:
        """The statuses of the journey's entries of current members (one per version or
        occurrence)."""
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                text(
                    f"SELECT status FROM {self.schema}.enrolments WHERE journey_id = :j "
                    "ORDER BY version, occurrence"
                ),
                {"j": journey_id},
            )
        return [row.status for row in rows]

    async def timers_of(self, journey_id: str) -> int:
        async with self._engine.connect() as connection:
            count: int = await connection.scalar(
                text(f"SELECT count(*) FROM {self.schema}.timers WHERE journey_id = :j"),
                {"j": journey_id},
            )
        return count

    async def engagement(self, profile_id: str) -> dict[tuple[str, int], tuple[int, int]]:
        """The profile's (sends, engaged) by (channel, local hour), and how many messages."""
        async with self._engine.connect() as connection:
            rows = await connection.execute(
                text(
                    f"SELECT channel, hour, sends, engaged FROM {self.schema}.engagement "
                    "WHERE profile_id = :p"
                ),
                {"p": profile_id},
            )
        return {(row.channel, row.hour): (row.sends, row.engaged) for row in rows}

    async def targeted(self, request_id: str) -> bool | None:
        """Whether journey marked the request's hour as the model's choice (None: no record)."""
        async with self._engine.connect() as connection:
            found: bool | None = await connection.scalar(
                text(f"SELECT targeted FROM {self.schema}.messages WHERE request_id = :r"),
                {"r": request_id},
            )
        return found

    async def untargeted_sends(self, channel: str, hour: int) -> int:
        """Everyone's sends at that local hour whose hour the model did not choose."""
        async with self._engine.connect() as connection:
            found: int | None = await connection.scalar(
                text(
                    f"SELECT sends FROM {self.schema}.untargeted_engagement "
                    "WHERE channel = :c AND hour = :h"
                ),
                {"c": channel, "h": hour},
            )
        return found or 0

    async def traits_of(self, profile_id: str) -> dict[str, Any]:
        """The traits journey's copy of the profile holds."""
        async with self._engine.connect() as connection:
            found: dict[str, Any] | None = await connection.scalar(
                text(f"SELECT traits FROM {self.schema}.profiles WHERE profile_id = :p"),
                {"p": profile_id},
            )
        return found or {}

    async def messages_of(self, profile_id: str) -> int:
        async with self._engine.connect() as connection:
            count: int = await connection.scalar(
                text(f"SELECT count(*) FROM {self.schema}.messages WHERE profile_id = :p"),
                {"p": profile_id},
            )
        return count

    async def aclose(self) -> None:
        await self.http.aclose()
        await self._engine.dispose()


async def requests_of(
    service: JourneyHarness, journey: str, profile: str, count: int, within: float = 30
) -> list[Requested]:
    """Wait until the profile has `count` requests from the journey; fail if it gets more."""
    found: list[Requested] = []

    async def arrived() -> bool:
        nonlocal found
        found = [r for r in await service.requested(journey) if r.data.profile_id == profile]
        return len(found) >= count

    await wait_for(arrived, within=within, what=f"{count} requests of {journey} for {profile}")
    assert len(found) == count, [r.data.idempotency_key for r in found]
    return found


async def publish_in_turn(
    service: JourneyHarness, profile: str, traits_event: Event[Any], history: list[Event[Any]]
) -> None:
    """The profile's traits, then its history: each on its own topic, so each is awaited."""
    await service.publish(traits_event)

    async def known() -> bool:
        return bool(await service.traits_of(profile))

    await wait_for(known, within=30, what=f"journey to know the traits of {profile}")
    await service.publish(*history)
    sends = sum(isinstance(event.data, MessageSent) for event in history)

    async def counted() -> bool:
        engagement = await service.engagement(profile)
        return sum(sent for sent, _ in engagement.values()) == sends

    await wait_for(counted, within=30, what=f"journey to count the history of {profile}")
