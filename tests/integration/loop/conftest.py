"""Ingest, profile and segment as real processes, started once per module and warmed up."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.loop.harness import Loop
from tests.integration.support import wait_for


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def loop(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Loop]:
    """The three services, each in its own schema and consumer group, with a fresh source."""
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("loop-logs"))
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
                    env=consumer_env,
                    ready_timeout=60,
                )
            )
            segment_task = starting.create_task(
                launcher(
                    "services.segment",
                    name=f"segment_{run}",
                    migrate=True,
                    env={**consumer_env, "CLOSELOOP_SEGMENT_TIMER_POLL_INTERVAL_MS": "200"},
                    ready_timeout=60,
                )
            )
        ingest, profile, segment = (
            ingest_task.result(),
            profile_task.result(),
            segment_task.result(),
        )
        async with (
            httpx.AsyncClient(base_url=ingest.url, timeout=30) as ingest_client,
            httpx.AsyncClient(base_url=profile.url, headers=admin, timeout=30) as profile_client,
            httpx.AsyncClient(base_url=segment.url, headers=admin, timeout=30) as segment_client,
        ):
            created = await ingest_client.post("/sources", json={"name": "web"}, headers=admin)
            assert created.status_code == 201, created.text
            harness = Loop(
                stack=stack,
                ingest=ingest_client,
                profile=profile_client,
                segment=segment_client,
                ingest_url=ingest.url,
                write_key=created.json()["write_key"],
            )
            await _warm_up(harness, run, [ingest, profile, segment])
            yield harness
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
