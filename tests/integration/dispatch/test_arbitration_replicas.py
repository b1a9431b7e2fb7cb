"""Two dispatch processes share one ledger and arbitrate the same people at once: under a cap of
one a day, each person gets exactly one marketing message, the highest priority's, and every
transactional one; counted raw at the webhook receiver."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter

import orjson
import pytest

from libs.common.events import ContactRule
from libs.devstack import free_port
from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.events import rendered
from tests.integration.dispatch.conftest import ALLOW_LOOPBACK, FAST, warm_up
from tests.integration.dispatch.harness import DispatchHarness
from tests.integration.dispatch.providers import running_providers
from tests.integration.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

PEOPLE = 200
# Small claims, so that one person's messages are often split between the two processes' claims.
REPLICA = {**ALLOW_LOOPBACK, **FAST, "CLOSELOOP_DISPATCH_SENDER_BATCH": "7"}
PRIORITIES = (30, 90, 60)
MODULE = "services.dispatch"


async def test_replicas_send_one_marketing_message_each_the_highest_and_every_receipt(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = uuid.uuid4().hex[:8]
    schema = f"dispatch_replicas_{run}"
    async with running_providers() as (providers, base_url, _):
        logs = tmp_path_factory.mktemp("dispatch-migrate-logs")
        first = ServiceLauncher(stack, tmp_path_factory.mktemp("dispatch-replica-1-logs"))
        second = ServiceLauncher(stack, tmp_path_factory.mktemp("dispatch-replica-2-logs"))
        try:
            env = {**stack.env(), **REPLICA}
            await ServiceProcess(schema, MODULE, env, free_port(), log_dir=logs).migrate()
            # Migrated once, then started together.
            processes = await asyncio.gather(
                *(
                    launcher(MODULE, name=schema, env=REPLICA, ready_timeout=60)
                    for launcher in (first, second)
                )
            )
            harnesses = [DispatchHarness(stack, process) for process in processes]
            harness = harnesses[0]
            await warm_up(harness, providers, base_url, run)
            name = f"contend_{run}"
            await harness.channel(
                name, "webhook", {"url": f"{base_url}/hook/{name}", "secret": "s"}
            )
            caps = [{"channel": "*", "max": 1, "window": "P1D"}]
            held = {"caps": caps, "arbitration": {"window": "PT1H"}}
            response = await harness.http.put("/policies", json=held)
            assert response.status_code == 200, response.text
            people = [f"prf_{run}_{n}" for n in range(PEOPLE)]
            messages = [
                rendered(name, person, payload={"priority": priority}, contact=rule)
                for person in people
                for priority, rule in [
                    *((p, ContactRule(priority=p)) for p in PRIORITIES),
                    (-1, ContactRule(transactional=True)),
                ]
            ]
            await harness.publish(*messages)

            async def marketing_held() -> bool:
                held = await _total(harnesses, "closeloop_dispatch_held_messages_total ")
                return held >= len(PRIORITIES) * PEOPLE

            await wait_for(marketing_held, within=60, what="every marketing message held")
            # Both processes now find every held message due at once.
            response = await harness.http.put("/policies", json={"caps": caps})
            assert response.status_code == 200, response.text
            inbox = providers.webhook(name)

            suppressed = f'closeloop_dispatch_sends_total{{channel="{name}",outcome="suppressed"}}'

            async def all_decided() -> bool:
                dropped = await _total(harnesses, suppressed)
                return dropped >= (len(PRIORITIES) - 1) * PEOPLE and len(inbox.raw) >= 2 * PEOPLE

            await wait_for(all_decided, within=60, what="every message decided")
            received: Counter[tuple[str, int]] = Counter()
            for request in inbox.raw:
                body = orjson.loads(request["body"])
                received[body["profile_id"], body["payload"]["priority"]] += 1
            assert received == Counter(
                {(person, priority): 1 for person in people for priority in (90, -1)}
            )
            lost = 'closeloop_dispatch_arbitration_losses_total{outcome="dropped"}'
            assert await _total(harnesses, lost) == (len(PRIORITIES) - 1) * PEOPLE
            for other in harnesses:
                await other.aclose()
        finally:
            await second.stop_all()
            await first.stop_all()


async def _total(harnesses: list[DispatchHarness], series: str) -> float:
    """A metric's series added up over the processes."""
    total = 0.0
    for harness in harnesses:
        response = await harness.http.get("/metrics")
        response.raise_for_status()
        total += sum(
            float(line.rpartition(" ")[2])
            for line in response.text.splitlines()
            if line.startswith(series)
        )
    return total
