"""Drives a segment service process over the test stack: its API, its input and its output."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from libs.common import topics
from libs.common.events import (
    BehaviorOccurred,
    Event,
    ProfileChange,
    ProfileDeleted,
    ProfileMerged,
    ProfileUpdated,
    SegmentEntered,
)
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.support import a_behaviour, publish, read_events

SOURCE = "closeloop/tests/segment"


def behaviour(profile_id: str, event: str, occurred_at: datetime, **properties: Any) -> Event[Any]:
    return a_behaviour(
        profile_id, event=event, occurred_at=occurred_at, properties=properties, source=SOURCE
    )


def identified(profile_id: str, event: str, **changes: Any) -> Event[Any]:
    """A behaviour whose call changed the profile (`identified(p, "identify", **{"traits.plan":
    "premium"})`): the changes travel with it, and no profile.updated is sent for them."""
    now = datetime.now(UTC)
    return Event(
        data=BehaviorOccurred(
            profile_id=profile_id,
            event=event,
            kind="identify",
            occurred_at=now,
            received_at=now,
            message_id=f"m-{uuid.uuid4()}",
            profile_changes=[ProfileChange(field=path, after=v) for path, v in changes.items()],
        ),
        key=profile_id,
        source=SOURCE,
    )


def profile_update(profile_id: str, **changes: Any) -> Event[Any]:
    """`profile_update(p, **{"traits.plan": "premium"})`."""
    return Event(
        data=ProfileUpdated(
            profile_id=profile_id,
            changes=[ProfileChange(field=field, after=after) for field, after in changes.items()],
            occurred_at=datetime.now(UTC),
        ),
        key=profile_id,
        source=SOURCE,
    )


def merge(survivor: str, merged: str, occurred_at: datetime) -> Event[Any]:
    return Event(
        data=ProfileMerged(
            survivor_id=survivor, merged_ids=[merged], reason="identify", occurred_at=occurred_at
        ),
        key=survivor,
        source=SOURCE,
    )


def erasure(profile_id: str, requested_at: datetime) -> Event[Any]:
    return Event(
        data=ProfileDeleted(
            profile_id=profile_id,
            erasure_request_id=f"era_{uuid.uuid4().hex[:12]}",
            requested_at=requested_at,
        ),
        key=profile_id,
        source=SOURCE,
    )


class SegmentHarness:
    """One running segment service: its HTTP API as the admin, and what it published."""

    def __init__(self, stack: Stack, process: ServiceProcess) -> None:
        self.stack = stack
        self.process = process
        self.http = httpx.AsyncClient(
            base_url=process.url,
            headers={"Authorization": f"Bearer {stack.admin_token}"},
            timeout=30.0,
        )

    async def publish(self, *events: Event[Any]) -> None:
        await publish(self.stack.kafka_bootstrap, events)

    async def create(self, segment_id: str, conditions: Any) -> httpx.Response:
        body = {"id": segment_id, "name": segment_id, "conditions": conditions}
        return await self.http.post("/segments", json=body)

    async def members(self, segment_id: str) -> list[str]:
        response = await self.http.get(f"/segments/{segment_id}/members", params={"limit": 1000})
        response.raise_for_status()
        return [member["profile_id"] for member in response.json()["members"]]

    async def transitions(self, segment_id: str) -> list[tuple[str, str, str]]:
        """(profile, `entered`/`exited`, reason) of the segment, in the order published."""
        found: list[tuple[str, str, str]] = []
        for _, event in await read_events(self.stack.kafka_bootstrap, topics.SEGMENT):
            if getattr(event.data, "segment_id", None) != segment_id:
                continue
            verb = "entered" if isinstance(event.data, SegmentEntered) else "exited"
            found.append((event.data.profile_id, verb, event.data.reason))
        return found

    async def aclose(self) -> None:
        await self.http.aclose()
