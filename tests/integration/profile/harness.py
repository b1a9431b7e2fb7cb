"""The profile service running as a real process on the test stack, and what its tests use."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from libs.common import topics
from libs.common.events import (
    Event,
    IngestIdentify,
    IngestPage,
    IngestTrack,
    ProfileChangeRequested,
    ProfileUpdated,
)
from libs.devstack import free_port
from libs.devstack.pytest_plugin import TEST_ADMIN_TOKEN
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.support import publish, read_events, wait_for

BASE_TIME = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


@dataclass
class ProfileService:
    """The running service, its REST client, and helpers to publish calls and read results."""

    stack: Stack
    process: ServiceProcess
    client: httpx.AsyncClient
    replicas: tuple[ServiceProcess, ...] = ()  # every process, when there are several

    @property
    def schema(self) -> str:
        return self.process.name

    async def publish(self, *calls: IngestTrack | IngestIdentify | IngestPage) -> None:
        events = [
            Event(
                data=call,
                key=call.user_id or call.anonymous_id or "",
                source="tests",
                id=call.message_id,
            )
            for call in calls
        ]
        await publish(self.stack.kafka_bootstrap, events)

    async def profile_of(self, identifier: str) -> dict[str, Any] | None:
        response = await self.client.get("/profiles", params={"identifier": identifier})
        response.raise_for_status()
        profiles: list[dict[str, Any]] = response.json()["profiles"]
        return profiles[0] if profiles else None

    async def wait_for_profile(
        self, identifier: str, *, counted: int = 1, within: float = 30.0
    ) -> dict[str, Any]:
        """The identifier's profile once it has seen at least `counted` events."""
        found: dict[str, Any] = {}

        async def has_profile() -> bool:
            profile = await self.profile_of(identifier)
            if profile is None or sum(profile["counters"].values()) < counted:
                return False
            found.update(profile)
            return True

        await wait_for(has_profile, within=within, what=f"the profile of {identifier}")
        return found

    async def events_on(self, topic: str, **matching: Any) -> list[Event[Any]]:
        """Events on a topic whose data has every `matching` field value."""
        return [
            event
            for _, event in await read_events(self.stack.kafka_bootstrap, topic)
            if all(getattr(event.data, name, None) == value for name, value in matching.items())
        ]

    async def wait_for_events(
        self, topic: str, *, within: float = 30.0, **matching: Any
    ) -> list[Event[Any]]:
        """The events on a topic whose data has every `matching` field value, once there is one."""
        found: list[Event[Any]] = []

        async def published() -> bool:
            found[:] = await self.events_on(topic, **matching)
            return bool(found)

        await wait_for(published, within=within, what=f"an event on {topic} with {matching}")
        return found

    async def updates_up_to_a_change_request(self, profile_id: str) -> list[Event[Any]]:
        """Every `profile.updated` of the profile, up to and with the one a change request sent
        now causes (it is last): the outbox publishes in commit order, so whatever an event
        handled before caused is on the topic by then. Call it once those events' behaviours
        are published."""
        request = Event(
            data=ProfileChangeRequested(
                request_id=unique("upd"),
                profile_id=profile_id,
                set_traits={"sentinel": unique("sentinel")},
                occurred_at=datetime.now(UTC),
            ),
            key=profile_id,
            source="tests",
        )
        await publish(self.stack.kafka_bootstrap, [request])
        await self.wait_for_events(topics.PROFILE, caused_by=request.id)
        return [
            event
            for event in await self.events_on(topics.PROFILE, profile_id=profile_id)
            if isinstance(event.data, ProfileUpdated)
        ]

    async def fetchval(self, sql: str, *args: Any) -> Any:
        dsn = self.stack.database_url.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(dsn)
        try:
            return await connection.fetchval(sql.replace("{schema}", self.schema), *args)
        finally:
            await connection.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def at(minutes: float) -> datetime:
    return BASE_TIME + timedelta(minutes=minutes)


def timing(minutes: float) -> dict[str, Any]:
    return {"timestamp": at(minutes), "receivedAt": at(minutes), "sourceId": "src_tests"}


def _key(call: IngestTrack | IngestIdentify | IngestPage) -> str:
    """As ingest keys a call: its user id, else its anonymous id."""
    return call.user_id or call.anonymous_id or ""


def running_profile_service(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory, **settings: str
) -> contextlib.AbstractAsyncContextManager[ProfileService]:
    """A profile service process with `settings` (environment variables) over the defaults."""
    return running_profile_replicas(stack, tmp_path_factory, 1, settings)


@contextlib.asynccontextmanager
async def running_profile_replicas(
    stack: Stack,
    tmp_path_factory: pytest.TempPathFactory,
    replicas: int,
    settings: Mapping[str, str] | None = None,
) -> AsyncIterator[ProfileService]:
    """`replicas` processes of one profile service (one schema, one consumer group); the
    client talks to the first."""
    # Its own schema and consumer group, so it reads the whole shared ingest topic from the start.
    name = f"profile_{uuid.uuid4().hex[:8]}"
    logs = tmp_path_factory.mktemp(f"{name}-logs")
    env = {**stack.env(), "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000", **(settings or {})}
    processes = [
        ServiceProcess(name, "services.profile", env, free_port(), log_dir=logs / f"p{replica}")
        for replica in range(replicas)
    ]
    await processes[0].migrate()
    try:
        for process in processes:
            process.start()
        for process in processes:
            await process.wait_ready(60)
        headers = {"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
        async with httpx.AsyncClient(
            base_url=processes[0].url, headers=headers, timeout=10
        ) as client:
            yield ProfileService(stack, processes[0], client, tuple(processes))
    finally:
        for process in processes:
            await process.stop()
