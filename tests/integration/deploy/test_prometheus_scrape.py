"""A real Prometheus scrapes the services: every metric a dashboard or alert reads has data."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
import yaml

from libs.common import topics
from libs.devstack import free_port
from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.services import ServiceProcess, discover_services
from libs.devstack.stack import Stack
from tests.integration.dispatch.providers import Providers, running_providers
from tests.integration.support import publish_raw, read_topic, wait_for
from tests.unit.deploy.deploy_files import ALERT_RULES, owner, used_metric_names

pytestmark = pytest.mark.integration

SCRAPE_INTERVAL = "1s"


def _prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail(
            "prometheus is not installed: `apt-get install -y --no-install-recommends "
            "prometheus` (Debian's package; `make test` installs it)"
        )
    return binary


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def services(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, ServiceProcess]]:
    """Every service under services/, migrated and running, each in a schema of its own."""
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("scrape-logs"))
    run = uuid.uuid4().hex[:8]
    env = {
        "CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000",
        # The webhook receiver runs on loopback, which dispatch refuses by default (SSRF).
        "CLOSELOOP_DISPATCH_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]',
        # Journey would check template and segment ids against those services' APIs; here
        # they start together, so the checks are skipped (an empty URL, see docs/journey.md).
        "CLOSELOOP_JOURNEY_CONTENT_URL": "",
        "CLOSELOOP_JOURNEY_SEGMENT_URL": "",
    }
    try:
        async with asyncio.TaskGroup() as starting:
            tasks = {
                spec.name: starting.create_task(
                    launcher(
                        spec.module,
                        name=f"{spec.name}_{run}",
                        migrate=True,
                        env=env,
                        ready_timeout=90,
                    )
                )
                for spec in discover_services()
            }
        yield {name: task.result() for name, task in tasks.items()}
    finally:
        await launcher.stop_all()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def prometheus(
    services: dict[str, ServiceProcess], tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    """Prometheus scraping every service every second, with the alert rules loaded; its URL."""
    binary = _prometheus_binary()
    workdir = tmp_path_factory.mktemp("prometheus")
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(ALERT_RULES)],
        "scrape_configs": [
            {"job_name": name, "static_configs": [{"targets": [f"127.0.0.1:{process.port}"]}]}
            for name, process in services.items()
        ],
    }
    config_path = workdir / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log = (workdir / "prometheus.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={config_path}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:

            async def ready() -> bool:
                assert process.returncode is None, f"prometheus exited: {_tail(workdir)}"
                try:
                    return (await client.get("/-/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_for(ready, within=60, what="prometheus to be ready")
        yield url
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), timeout=15)
            except TimeoutError:
                process.kill()
                await process.wait()
        log.close()


def _tail(workdir: Path) -> str:
    return (workdir / "prometheus.log").read_text()[-2000:]


async def _drive_events(stack: Stack, services: dict[str, ServiceProcess]) -> None:
    """Events through ingest's Segment API, one duplicate and one undecodable message."""
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    run = uuid.uuid4().hex[:8]
    async with httpx.AsyncClient(base_url=services["ingest"].url, timeout=30) as ingest:
        created = await ingest.post("/sources", json={"name": f"scrape-{run}"}, headers=admin)
        assert created.status_code == 201, created.text
        auth = httpx.BasicAuth(created.json()["write_key"], "")
        user = f"scrape_{run}"
        calls: list[tuple[str, dict[str, Any]]] = [
            ("identify", {"userId": user, "traits": {"plan": "pro"}}),
            *[
                ("track", {"userId": user, "event": "order_completed", "properties": {"n": i}})
                for i in range(5)
            ],
        ]
        for index, (call, body) in enumerate(calls):
            body["messageId"] = f"{run}-{index}"
            response = await ingest.post(f"/v1/{call}", json=body, auth=auth)
            assert response.status_code == 200, response.text
    # A copy of one accepted event: the consumers' inboxes count it as a duplicate.
    accepted = [
        record
        for record in await read_topic(stack.kafka_bootstrap, topics.INGEST)
        if record.key == user.encode()
    ]
    assert accepted, "ingest published nothing for the run's user"
    first = accepted[0]
    assert first.key is not None and first.value is not None
    await publish_raw(
        stack.kafka_bootstrap, topics.INGEST, first.key, first.value, list(first.headers)
    )
    # Not an event at all: its consumers dead-letter it.
    await publish_raw(
        stack.kafka_bootstrap,
        topics.INGEST,
        f"poison_{run}".encode(),
        b"not json",
        [("ce_type", b"ingest.track"), ("ce_id", run.encode())],
    )


async def _drive_a_send(
    stack: Stack, services: dict[str, ServiceProcess], providers: Providers, providers_url: str
) -> None:
    """A journey on a segment sends a webhook: dispatch's send and loop-latency metrics move."""
    admin = {"Authorization": f"Bearer {stack.admin_token}"}
    run = uuid.uuid4().hex[:8]
    definitions: list[tuple[str, str, dict[str, Any]]] = [
        (
            "dispatch",
            "/channels",
            {
                "name": "webhook",
                "kind": "webhook",
                "config": {"url": f"{providers_url}/hook/scrape", "secret": "s"},
            },
        ),
        (
            "content",
            "/templates",
            {
                "id": f"tpl_{run}",
                "name": "scrape",
                "channel": "webhook",
                "variants": [{"id": "only", "payload": {"to": "{{ profile.id }}"}}],
            },
        ),
        (
            "segment",
            "/segments",
            {"id": f"seg_{run}", "name": "scrape", "conditions": {"trait": "scrape", "value": run}},
        ),
        (
            "journey",
            "/journeys",
            {
                "id": f"jrn_{run}",
                "name": "scrape",
                "entry": {"segment": f"seg_{run}"},
                "start": "hook",
                "nodes": {
                    "hook": {"type": "send", "channel": "webhook", "template_id": f"tpl_{run}"}
                },
            },
        ),
        ("journey", f"/journeys/jrn_{run}/publish", {}),
    ]
    for service, path, body in definitions:
        async with httpx.AsyncClient(base_url=services[service].url, headers=admin) as client:
            response = await client.post(path, json=body or None, timeout=30)
            assert response.status_code < 300, f"{service} {path}: {response.text}"
    async with httpx.AsyncClient(base_url=services["ingest"].url, timeout=30) as ingest:
        created = await ingest.post("/sources", json={"name": f"send-{run}"}, headers=admin)
        auth = httpx.BasicAuth(created.json()["write_key"], "")
        identify = {"userId": f"send_{run}", "traits": {"scrape": run}}
        assert (await ingest.post("/v1/identify", json=identify, auth=auth)).status_code == 200

    async def sent() -> bool:
        return bool(providers.webhook("scrape").by_key)

    await wait_for(sent, within=120, what="the journey's webhook to arrive")


async def _has_data(client: httpx.AsyncClient, name: str) -> bool:
    response = await client.get("/api/v1/query", params={"query": name})
    response.raise_for_status()
    return bool(response.json()["data"]["result"])


async def test_every_metric_in_dashboards_and_alerts_returns_data(
    stack: Stack, services: dict[str, ServiceProcess], prometheus: str
) -> None:
    used = used_metric_names()
    # Service-private metrics need that service to run; they are listed, never silently dropped.
    absent_owner = {name: owner(name) for name in used if owner(name) not in (None, *services)}
    expected = {name for name in used if name not in absent_owner}
    async with running_providers() as (providers, providers_url, _):
        await _drive_a_send(stack, services, providers, providers_url)
    await _drive_events(stack, services)
    missing: set[str] = set(expected)
    async with httpx.AsyncClient(base_url=prometheus, timeout=10) as client:

        async def all_have_data() -> bool:
            missing.difference_update(
                [name for name in sorted(missing) if await _has_data(client, name)]
            )
            return not missing

        try:
            await wait_for(all_have_data, within=120, what="every metric to have data", every=1)
        except AssertionError:
            where = {name: sorted(used[name]) for name in missing}
            raise AssertionError(f"no data in Prometheus for: {where}") from None
        rules = (await client.get("/api/v1/rules")).json()["data"]["groups"]
        assert sum(len(group["rules"]) for group in rules) >= 1, "the alert rules did not load"
    print(
        f"\nservices scraped: {sorted(services)}; metrics with data: {len(expected)}; "
        f"service not present: {absent_owner}"
    )
