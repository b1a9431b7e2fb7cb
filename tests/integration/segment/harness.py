"""Drives a segment service process over the test stack: its API, its input and its output."""

from __future__ import annotations

from typing import Any

import httpx

from libs.common import topics
from libs.common.events import Event, ProfileSnapshot, SegmentEntered
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.support import publish, read_events


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

    async def entry_facts(self, segment_id: str, profile_id: str) -> list[ProfileSnapshot | None]:
        """The facts each of the profile's entries into the segment carried, in order."""
        return [
            event.data.profile
            for _, event in await read_events(self.stack.kafka_bootstrap, topics.SEGMENT)
            if isinstance(event.data, SegmentEntered)
            and (event.data.segment_id, event.data.profile_id) == (segment_id, profile_id)
        ]

    async def aclose(self) -> None:
        await self.http.aclose()
