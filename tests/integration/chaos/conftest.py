"""A stack of its own for fault injection: the services reach the broker through a TCP proxy,
and PostgreSQL may be stopped and started under them. All seven services run as processes."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from libs.devstack import free_port
from libs.devstack._process import LOOPBACK
from libs.devstack.postgres import EmbeddedPostgres
from libs.devstack.pytest_plugin import TEST_ADMIN_TOKEN, ServiceLauncher
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.chaos.proxy import ProxyThread
from tests.integration.closed_loop.harness import ClosedLoop, now
from tests.integration.dispatch.providers import running_providers
from tests.integration.support import wait_for

_CONSUMER = {"CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000"}
_FAST_TIMERS = {
    "CLOSELOOP_SEGMENT_TIMER_POLL_INTERVAL_MS": "200",
    "CLOSELOOP_JOURNEY_TIMER_POLL_INTERVAL_MS": "200",
}
_DISPATCH = {
    # The receiver runs on loopback, which dispatch refuses by default (SSRF).
    "CLOSELOOP_DISPATCH_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
    "CLOSELOOP_DISPATCH_SENDING_LEASE_SECONDS": "3",
    "CLOSELOOP_DISPATCH_PROVIDER_TIMEOUT_SECONDS": "2",
    "CLOSELOOP_DISPATCH_RETRY_BASE_SECONDS": "0.2",
}
LONG = os.environ.get("CLOSELOOP_CHAOS_LONG", "") not in ("", "0", "false")


@dataclass(frozen=True)
class Size:
    """How hard and how long: the default is what CI runs; CLOSELOOP_CHAOS_LONG=1 (make chaos).

    The rate is modest on purpose: on a small machine (2 CPUs) the seven services carry the
    whole loop for about a dozen people a second, and a faster load only builds a backlog that
    the drain then has to absorb. `CLOSELOOP_CHAOS_RATE` overrides it.
    """

    name: str
    rate: float  # new people per second
    purchase_every: int  # every n-th person buys
    before: float  # seconds of load before each fault
    after: float  # seconds of load after the system is back
    repeats: int  # times each fault is injected
    broker_cut: float  # seconds the broker is unreachable
    deadline: float  # seconds the test may take (an asyncio deadline inside pytest-timeout's)


def _size() -> Size:
    if LONG:
        size = Size("long", 30, 2, before=20, after=20, repeats=3, broker_cut=10, deadline=5400)
    else:
        size = Size("short", 10, 2, before=2, after=2, repeats=1, broker_cut=10, deadline=420)
    rate = os.environ.get("CLOSELOOP_CHAOS_RATE")
    return replace(size, rate=float(rate)) if rate else size


SIZE = _size()


@dataclass
class Chaos:
    """The loop, the stack under it, the proxy in front of the broker and the run's names."""

    loop: ClosedLoop
    stack: Stack
    postgres: EmbeddedPostgres
    proxy: ProxyThread
    run: str

    def schema(self, service: str) -> str:
        return f"{service}_{self.run}"

    @property
    def dsn(self) -> str:
        return self.postgres.dsn

    async def all_ready(self, *, within: float, what: str) -> None:
        async with httpx.AsyncClient(timeout=2) as client:

            async def ready() -> bool:
                for process in self.loop.processes.values():
                    try:
                        answer = await client.get(f"{process.url}/readyz")
                    except httpx.TransportError:
                        return False
                    if answer.status_code != 200:
                        return False
                return True

            await wait_for(ready, within=within, what=what, every=0.2)


@pytest_asyncio.fixture(scope="package", loop_scope="session")
async def chaos(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Chaos]:
    state_dir = Path(tempfile.mkdtemp(prefix="closeloop-chaos-"))
    os.chmod(state_dir, 0o755)
    log_dir = tmp_path_factory.mktemp("chaos-logs")
    broker_port = free_port()
    proxy = ProxyThread(LOOPBACK, free_port(), LOOPBACK, broker_port)
    await proxy.start()
    stack = Stack(
        state_dir,
        log_dir=log_dir,
        fast=True,
        environment="test",
        admin_token=TEST_ADMIN_TOKEN,
        broker_port=broker_port,
        broker_advertised_port=proxy.listen_port,
    )
    assert stack.postgres is not None, "the chaos suite restarts its own embedded PostgreSQL"
    launcher = ServiceLauncher(stack, log_dir)
    run = uuid.uuid4().hex[:8]
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    try:
        await stack.start()
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
                        clients=clients,
                        processes=processes,
                        providers=providers,
                        providers_url=providers_url,
                        smtp_port=smtp_port,
                        write_key=created.json()["write_key"],
                        bootstrap=stack.kafka_bootstrap,
                    )
                    await loop.webhook_channel("webhook")
                    await _warm_up(loop, run)
                    yield Chaos(loop, stack, stack.postgres, proxy, run)
                finally:
                    for client in clients.values():
                        await client.aclose()
            finally:
                await launcher.stop_all()
    finally:
        await stack.stop()
        await proxy.stop()
        shutil.rmtree(state_dir, ignore_errors=True)


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
    print(f"\nchaos warm-up: first call round in {time.monotonic() - started:.1f}s")
