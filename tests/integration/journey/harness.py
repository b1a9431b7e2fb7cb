"""Drives a journey service process over the test stack: its API, its input and its output."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from libs.common import topics
from libs.common.bus.reader import header
from libs.common.events import (
    BehaviorOccurred,
    Event,
    JourneyRef,
    MessageClicked,
    MessageRequested,
    ProfileChangeRequested,
    ProfileDeleted,
    ProfileMerged,
    SegmentEntered,
    SegmentExited,
)
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.support import publish, read_events

SOURCE = "closeloop/tests/journey"


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def entered(segment_id: str, profile_id: str) -> Event[Any]:
    return Event(
        data=SegmentEntered(
            segment_id=segment_id,
            segment_version=1,
            profile_id=profile_id,
            occurred_at=datetime.now(UTC),
            reason="realtime",
        ),
        key=profile_id,
        source=SOURCE,
    )


def exited(segment_id: str, profile_id: str) -> Event[Any]:
    return Event(
        data=SegmentExited(
            segment_id=segment_id,
            segment_version=1,
            profile_id=profile_id,
            occurred_at=datetime.now(UTC),
            reason="realtime",
        ),
        key=profile_id,
        source=SOURCE,
    )


def erasure(profile_id: str) -> Event[Any]:
    return Event(
        data=ProfileDeleted(
            profile_id=profile_id,
            erasure_request_id=unique("era"),
            requested_at=datetime.now(UTC),
        ),
        key=profile_id,
        source=SOURCE,
    )


def merge(survivor: str, merged: str) -> Event[Any]:
    return Event(
        data=ProfileMerged(
            survivor_id=survivor,
            merged_ids=[merged],
            reason="identify",
            occurred_at=datetime.now(UTC),
        ),
        key=survivor,
        source=SOURCE,
    )


def behaviour(profile_id: str, event: str, **properties: Any) -> Event[Any]:
    return Event(
        data=BehaviorOccurred(
            profile_id=profile_id,
            event=event,
            kind="track",
            properties=properties,
            occurred_at=datetime.now(UTC),
            received_at=datetime.now(UTC),
            message_id=uuid.uuid4().hex,
        ),
        key=profile_id,
        source=SOURCE,
    )


def clicked(request: MessageRequested) -> Event[Any]:
    return Event(
        data=MessageClicked(
            message_id=unique("msg"),
            request_id=request.request_id,
            profile_id=request.profile_id,
            channel=request.channel,
            journey=JourneyRef.model_validate(request.journey.model_dump()),
            template_id=request.template_id,
            occurred_at=datetime.now(UTC),
            url="https://shop.example.com/p/oolong",
        ),
        key=request.profile_id,
        source=SOURCE,
    )


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
    """One running journey service: its HTTP API as the admin, and what it published."""

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

    async def aclose(self) -> None:
        await self.http.aclose()
