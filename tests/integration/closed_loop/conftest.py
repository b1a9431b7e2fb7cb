"""All seven services as real processes, the fake providers, and a warm-up round of the loop."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Mapping

import httpx
import pytest
import pytest_asyncio

from libs.devstack import free_port
from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.closed_loop.harness import ClosedLoop, now
from tests.integration.dispatch.providers import running_providers
from tests.integration.support import wait_for

_CONSUMER = {"CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000"}
_FAST_TIMERS = {
    "CLOSELOOP_SEGMENT_TIMER_POLL_INTERVAL_MS": "200",
    "CLOSELOOP_JOURNEY_TIMER_POLL_INTERVAL_MS": "200",
}
_DISPATCH = {
    # The receivers run on loopback, which dispatch refuses by default (SSRF).
    "CLOSELOOP_DISPATCH_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
    "CLOSELOOP_DISPATCH_SENDING_LEASE_SECONDS": "5",
    "CLOSELOOP_DISPATCH_PROVIDER_TIMEOUT_SECONDS": "2",
    "CLOSELOOP_DISPATCH_RETRY_BASE_SECONDS": "0.2",
}


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def loop(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[ClosedLoop]:
    """The loop, in schemas and consumer groups of its own, warmed up until a call goes round."""
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("closed-loop-logs"))
    run = uuid.uuid4().hex[:8]
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    async with running_providers() as (providers, providers_url, smtp_port):
        try:
            processes = await _start_services(launcher, run)
            clients = {
                name: httpx.AsyncClient(base_url=process.url, headers=admin, timeout=30)
                for name, process in processes.items()
            }
            try:
                created = await clients["ingest"].post("/sources", json={"name": f"web_{run}"})
                assert created.status_code == 201, created.text
                loop = ClosedLoop(
                    clients,
                    processes,
                    providers,
                    providers_url,
                    smtp_port,
                    created.json()["write_key"],
                    stack.kafka_bootstrap,
                )
                await loop.webhook_channel("webhook")
                await loop.email_channel("email")
                await _warm_up(loop, run)
                yield loop
            finally:
                for client in clients.values():
                    await client.aclose()
        finally:
            await launcher.stop_all()


async def _start_services(launcher: ServiceLauncher, run: str) -> dict[str, ServiceProcess]:
    dispatch_port = free_port()
    dispatch_url = f"http://127.0.0.1:{dispatch_port}"
    first = await _start_together(
        launcher,
        run,
        {
            "ingest": {},
            "profile": _CONSUMER,
            "segment": {**_CONSUMER, **_FAST_TIMERS},
            "content": {**_CONSUMER, "CLOSELOOP_TRACKING_BASE_URL": dispatch_url},
            "dispatch": {**_CONSUMER, **_DISPATCH},
            "attribution": _CONSUMER,
        },
        ports={"dispatch": dispatch_port},
    )
    # Journey checks templates and segments against content's and segment's APIs.
    references = {
        "CLOSELOOP_JOURNEY_CONTENT_URL": first["content"].url,
        "CLOSELOOP_JOURNEY_SEGMENT_URL": first["segment"].url,
    }
    journey = await _start_together(
        launcher, run, {"journey": {**_CONSUMER, **_FAST_TIMERS, **references}}
    )
    return first | journey


async def _start_together(
    launcher: ServiceLauncher,
    run: str,
    services: Mapping[str, Mapping[str, str]],
    ports: Mapping[str, int] | None = None,
) -> dict[str, ServiceProcess]:
    tasks: dict[str, asyncio.Task[ServiceProcess]] = {}
    async with asyncio.TaskGroup() as starting:
        for name, env in services.items():
            tasks[name] = starting.create_task(
                launcher(
                    f"services.{name}",
                    name=f"{name}_{run}",
                    port=(ports or {}).get(name),
                    env=env,
                    migrate=True,
                    ready_timeout=90,
                )
            )
    return {name: task.result() for name, task in tasks.items()}


async def _warm_up(loop: ClosedLoop, run: str) -> None:
    """Return once an identify has gone all the way round to a webhook and into attribution:
    every consumer has joined its group."""
    started = time.monotonic()
    segment_id, template_id, journey_id = f"seg_warm_{run}", f"tpl_warm_{run}", f"jrn_warm_{run}"
    await loop.call(
        "segment",
        "POST",
        "/segments",
        json={"id": segment_id, "name": "warm", "conditions": {"trait": "warm_up", "value": run}},
    )
    await loop.call(
        "content",
        "POST",
        "/templates",
        json={
            "id": template_id,
            "name": "warm",
            "channel": "webhook",
            "variants": [{"id": "only", "payload": {"warm": "{{ profile.id }}"}}],
        },
    )
    await loop.call(
        "journey",
        "POST",
        "/journeys",
        json={
            "id": journey_id,
            "name": "warm",
            "entry": {"segment": segment_id},
            "start": "hook",
            "nodes": {"hook": {"type": "send", "channel": "webhook", "template_id": template_id}},
        },
    )
    await loop.call("journey", "POST", f"/journeys/{journey_id}/publish")
    await loop.track("identify", userId=f"warm_{run}", traits={"warm_up": run}, timestamp=now())

    async def counted_by_attribution() -> bool:
        report = await loop.call(
            "attribution", "GET", "/reports/journey", params={"journey_id": journey_id}
        )
        return any(row["sent"] >= 1 for row in report["rows"])

    logs = ", ".join(str(process.log_path) for process in loop.processes.values())
    await wait_for(
        counted_by_attribution, within=180, what=f"a warm-up call to go round (logs: {logs})"
    )
    print(f"\nclosed loop warm-up: first call round in {time.monotonic() - started:.1f}s")
