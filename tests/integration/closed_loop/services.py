"""Starting the seven services as one loop, and the webhook journey the loop tests build on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from libs.devstack import free_port
from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.services import ServiceProcess
from tests.integration.closed_loop.harness import ClosedLoop, now
from tests.integration.support import wait_for

CONSUMER = {"CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000"}
FAST_TIMERS = {
    "CLOSELOOP_SEGMENT_TIMER_POLL_INTERVAL_MS": "200",
    "CLOSELOOP_JOURNEY_TIMER_POLL_INTERVAL_MS": "200",
}
# The receivers run on loopback, which dispatch refuses by default (SSRF).
ALLOW_LOOPBACK = {"CLOSELOOP_DISPATCH_WEBHOOK_ALLOWED_NETWORKS": '["127.0.0.0/8"]'}


async def start_loop_services(
    launcher: ServiceLauncher,
    run: str,
    dispatch_env: Mapping[str, str],
    every_env: Mapping[str, str] | None = None,
) -> dict[str, ServiceProcess]:
    """All seven, each in a schema and consumer group named `<service>_<run>`; journey last,
    since it checks templates, segments and topics against content's, segment's and
    dispatch's APIs. `every_env`
    goes to all seven, `dispatch_env` to dispatch alone."""
    dispatch_port = free_port()
    dispatch_url = f"http://127.0.0.1:{dispatch_port}"
    every = dict(every_env or {})
    first = await _start_together(
        launcher,
        run,
        {
            "ingest": every,
            "profile": {**CONSUMER, **every},
            "segment": {**CONSUMER, **FAST_TIMERS, **every},
            "content": {
                **CONSUMER,
                "CLOSELOOP_TRACKING_BASE_URL": dispatch_url,
                "CLOSELOOP_CONTENT_DISPATCH_URL": dispatch_url,
                **every,
            },
            "dispatch": {
                **CONSUMER,
                **ALLOW_LOOPBACK,
                "CLOSELOOP_TRACKING_BASE_URL": dispatch_url,
                **dispatch_env,
                **every,
            },
            "attribution": {**CONSUMER, **every},
        },
        ports={"dispatch": dispatch_port},
    )
    references = {
        "CLOSELOOP_JOURNEY_CONTENT_URL": first["content"].url,
        "CLOSELOOP_JOURNEY_SEGMENT_URL": first["segment"].url,
        "CLOSELOOP_JOURNEY_DISPATCH_URL": dispatch_url,
    }
    journey = await _start_together(
        launcher, run, {"journey": {**CONSUMER, **FAST_TIMERS, **references, **every}}
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


async def webhook_journey(
    loop: ClosedLoop, name: str, conditions: Any, payload: dict[str, Any]
) -> str:
    """A segment of `conditions`, a webhook template of `payload` and a published journey that
    sends it to everyone entering the segment; the journey's id (`jrn_<name>`)."""
    segment_id, template_id, journey_id = f"seg_{name}", f"tpl_{name}", f"jrn_{name}"
    await loop.call(
        "segment",
        "POST",
        "/segments",
        json={"id": segment_id, "name": name, "conditions": conditions},
    )
    await loop.call(
        "content",
        "POST",
        "/templates",
        json={
            "id": template_id,
            "name": name,
            "channel": "webhook",
            "variants": [{"id": "only", "payload": payload}],
        },
    )
    await loop.call(
        "journey",
        "POST",
        "/journeys",
        json={
            "id": journey_id,
            "name": name,
            "entry": {"segment": segment_id},
            "start": "hook",
            "nodes": {"hook": {"type": "send", "channel": "webhook", "template_id": template_id}},
        },
    )
    await loop.call("journey", "POST", f"/journeys/{journey_id}/publish")
    return journey_id


async def warm_up(loop: ClosedLoop, run: str) -> float:
    """Seconds until an identify has gone all the way round to a webhook and into attribution:
    every consumer has joined its group."""
    started = time.monotonic()
    journey_id = await webhook_journey(
        loop, f"warm_{run}", {"trait": "warm_up", "value": run}, {"warm": "{{ profile.id }}"}
    )
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
    return time.monotonic() - started
