"""Drives ingest, profile and segment running as processes: HTTP in, REST and topics out."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from libs.common import topics
from libs.common.events import Event, SegmentEntered
from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.support import read_events, wait_for


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class Transition:
    """One segment.entered / segment.exited event as published on closeloop.segment.v1."""

    verb: str
    reason: str
    profile_id: str
    segment_version: int
    occurred_at: datetime
    caused_by: str | None
    published_at: datetime


@dataclass
class Loop:
    """The three running services, an ingest source's write key, and admin clients to each."""

    stack: Stack
    ingest: httpx.AsyncClient
    profile: httpx.AsyncClient
    segment: httpx.AsyncClient
    ingest_url: str
    write_key: str

    async def send(self, call: str, **body: Any) -> str:
        """POST one Segment call to ingest with the write key; its messageId."""
        body.setdefault("messageId", unique(call))
        response = await self.ingest.post(
            f"/v1/{call}", json=body, auth=httpx.BasicAuth(self.write_key, "")
        )
        assert response.status_code == 200, response.text
        message_id: str = body["messageId"]
        return message_id

    async def create_segment(self, segment_id: str, conditions: Any) -> dict[str, Any]:
        body = {"id": segment_id, "name": segment_id, "conditions": conditions}
        response = await self.segment.post("/segments", json=body)
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    async def members(self, segment_id: str) -> list[str]:
        response = await self.segment.get(f"/segments/{segment_id}/members", params={"limit": 100})
        response.raise_for_status()
        return [member["profile_id"] for member in response.json()["members"]]

    async def profile_of(self, identifier: str) -> dict[str, Any] | None:
        response = await self.profile.get("/profiles", params={"identifier": identifier})
        response.raise_for_status()
        profiles: list[dict[str, Any]] = response.json()["profiles"]
        return profiles[0] if profiles else None

    async def wait_for_profile(
        self, identifier: str, *, counted: dict[str, int], within: float = 20.0
    ) -> dict[str, Any]:
        """The identifier's profile once its counters include at least `counted`."""
        found: dict[str, Any] = {}

        async def counted_enough() -> bool:
            profile = await self.profile_of(identifier)
            if profile is None:
                return False
            if any(profile["counters"].get(name, 0) < n for name, n in counted.items()):
                return False
            found.update(profile)
            return True

        await wait_for(counted_enough, within=within, what=f"{identifier} to count {counted}")
        return found

    async def events_on(self, topic: str) -> list[Event[Any]]:
        return [event for _, event in await read_events(self.stack.kafka_bootstrap, topic)]

    async def transitions(self, segment_id: str, profile_id: str) -> list[Transition]:
        """The profile's transitions in the segment, in order (one profile is one partition)."""
        found: list[Transition] = []
        for record, event in await read_events(self.stack.kafka_bootstrap, topics.SEGMENT):
            if record.key != profile_id.encode():
                continue
            data = event.data
            if getattr(data, "segment_id", None) != segment_id:
                continue
            found.append(
                Transition(
                    verb="entered" if isinstance(data, SegmentEntered) else "exited",
                    reason=data.reason,
                    profile_id=data.profile_id,
                    segment_version=data.segment_version,
                    occurred_at=data.occurred_at,
                    caused_by=data.caused_by,
                    published_at=event.time,
                )
            )
        return found

    async def wait_for_transitions(
        self, segment_id: str, profile_id: str, expected: list[tuple[str, str]], within: float
    ) -> list[Transition]:
        """The profile's transitions once they are exactly `expected` as (verb, reason)."""
        seen: list[Transition] = []

        async def published() -> bool:
            seen[:] = await self.transitions(segment_id, profile_id)
            return [(t.verb, t.reason) for t in seen] == expected

        try:
            await wait_for(published, within=within, what=f"{segment_id} transitions {expected}")
        except AssertionError:
            got = [(t.verb, t.reason) for t in seen]
            raise AssertionError(f"expected {expected} in {segment_id}, got {got}") from None
        return seen


@contextlib.asynccontextmanager
async def running_loop(
    stack: Stack,
    logs: Path,
    *,
    profile_env: Mapping[str, str] | None = None,
    segment_env: Mapping[str, str] | None = None,
) -> AsyncIterator[tuple[Loop, dict[str, ServiceProcess]]]:
    """Ingest, profile and segment started (each in its own schema and consumer group, with the
    extra settings given), a fresh source, and one call gone all the way round; the services by
    name beside the loop. Everything started is stopped on the way out."""
    launcher = ServiceLauncher(stack, logs)
    run = uuid.uuid4().hex[:8]
    consumer_env = {"CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000"}
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    try:
        async with asyncio.TaskGroup() as starting:
            # One failing cancels the others; whatever did start is stopped below.
            ingest_task = starting.create_task(
                launcher("services.ingest", name=f"ingest_{run}", migrate=True, ready_timeout=60)
            )
            profile_task = starting.create_task(
                launcher(
                    "services.profile",
                    name=f"profile_{run}",
                    migrate=True,
                    env={**consumer_env, **(profile_env or {})},
                    ready_timeout=60,
                )
            )
            segment_task = starting.create_task(
                launcher(
                    "services.segment",
                    name=f"segment_{run}",
                    migrate=True,
                    env={**consumer_env, **(segment_env or {})},
                    ready_timeout=60,
                )
            )
        processes = {
            "ingest": ingest_task.result(),
            "profile": profile_task.result(),
            "segment": segment_task.result(),
        }
        async with (
            httpx.AsyncClient(base_url=processes["ingest"].url, timeout=30) as ingest_client,
            # A manual fit of the purchase models re-scores everyone before it answers.
            httpx.AsyncClient(
                base_url=processes["profile"].url, headers=admin, timeout=60
            ) as profile_client,
            httpx.AsyncClient(
                base_url=processes["segment"].url, headers=admin, timeout=30
            ) as segment_client,
        ):
            created = await ingest_client.post("/sources", json={"name": "web"}, headers=admin)
            assert created.status_code == 201, created.text
            loop = Loop(
                stack=stack,
                ingest=ingest_client,
                profile=profile_client,
                segment=segment_client,
                ingest_url=processes["ingest"].url,
                write_key=created.json()["write_key"],
            )
            await _warm_up(loop, run, list(processes.values()))
            yield loop, processes
    finally:
        await launcher.stop_all()


async def _warm_up(loop: Loop, run: str, processes: list[ServiceProcess]) -> None:
    """Return once a call has gone all the way round: both consumers have joined their groups."""
    started = time.monotonic()
    segment_id, user_id = f"seg_warm_{run}", f"warm_{run}"
    await loop.create_segment(segment_id, {"trait": "warm_up", "value": run})
    await loop.send("identify", userId=user_id, traits={"warm_up": run})

    async def went_round() -> bool:
        profile = await loop.profile_of(f"user_id:{user_id}")
        return profile is not None and await loop.members(segment_id) == [profile["id"]]

    logs = ", ".join(str(process.log_path) for process in processes)
    await wait_for(went_round, within=90, what=f"a warm-up call to go round (logs: {logs})")
    print(
        f"\nloop warm-up: services started, first call round in {time.monotonic() - started:.1f}s"
    )
