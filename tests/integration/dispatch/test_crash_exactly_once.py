"""SIGKILL dispatch while it sends: after a restart, every message arrives, none twice."""

from __future__ import annotations

import time
import uuid

import pytest

from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.stack import Stack
from tests.events import rendered
from tests.integration.dispatch.conftest import ALLOW_LOOPBACK, FAST, warm_up
from tests.integration.dispatch.harness import DispatchHarness
from tests.integration.dispatch.providers import running_providers
from tests.integration.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
MESSAGES = 1000


async def test_sigkill_mid_send_loses_nothing_and_sends_nothing_twice(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("dispatch-crash-logs"))
    run = uuid.uuid4().hex[:8]
    async with running_providers() as (providers, base_url, _):
        try:
            process = await launcher(
                "services.dispatch",
                name=f"dispatch_crash_{run}",
                migrate=True,
                env={**ALLOW_LOOPBACK, **FAST},
                ready_timeout=60,
            )
            harness = DispatchHarness(stack, process)
            await warm_up(harness, providers, base_url, run)
            name = f"crash_{run}"
            await harness.channel(
                name, "webhook", {"url": f"{base_url}/hook/{name}", "secret": "s"}
            )
            inbox = providers.webhook(name)
            messages = [rendered(name) for _ in range(MESSAGES)]
            started = time.monotonic()
            await harness.publish(*messages)

            async def sending() -> bool:
                return len(inbox.raw) >= MESSAGES // 5

            await wait_for(sending, within=60, what="a fifth of the messages to arrive")
            await process.kill()
            killed_at = len(inbox.raw)
            process.start()
            await process.wait_ready(60)

            async def all_arrived() -> bool:
                return len(inbox.by_key) >= MESSAGES

            await wait_for(all_arrived, within=120, what="every message to arrive", every=0.2)
            elapsed = time.monotonic() - started
            keys = {m.data.idempotency_key for m in messages}
            retransmissions = sum(count - 1 for count in inbox.keys.values())
            print(
                f"\nraw requests {len(inbox.raw)}, distinct {len(inbox.by_key)}, "
                f"retransmissions {retransmissions} (killed after {killed_at} requests), "
                f"{MESSAGES} in {elapsed:.1f}s"
            )
            assert set(inbox.by_key) == keys
            # A resend after the crash reuses its key: the receiver stored each key once.
            assert all(inbox.keys[key] >= 1 for key in keys)
            await harness.aclose()
        finally:
            await launcher.stop_all()


async def test_throughput_to_a_local_webhook_receiver(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Printed, not asserted: the receiver shares this machine's two cores with dispatch.

    The receiver here is uvicorn in the test's own process: `python -m bench dispatch` measures
    against a fast receiver in a process of its own, beside the raw ceilings.
    """
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("dispatch-speed-logs"))
    run = uuid.uuid4().hex[:8]
    async with running_providers() as (providers, base_url, _):
        try:
            process = await launcher(
                "services.dispatch",
                name=f"dispatch_speed_{run}",
                migrate=True,
                env={**ALLOW_LOOPBACK, **FAST},
                ready_timeout=60,
            )
            harness = DispatchHarness(stack, process)
            await warm_up(harness, providers, base_url, run)
            name = f"speed_{run}"
            await harness.channel(
                name, "webhook", {"url": f"{base_url}/hook/{name}", "secret": "s"}
            )
            inbox = providers.webhook(name)
            count = 5000
            messages = [rendered(name) for _ in range(count)]
            await harness.publish(*messages)
            started = time.monotonic()

            async def first() -> bool:
                return len(inbox.raw) > 0

            await wait_for(first, within=60, what="the first message")
            started = time.monotonic()

            async def done() -> bool:
                return len(inbox.by_key) >= count

            await wait_for(done, within=180, what="every message", every=0.05)
            elapsed = time.monotonic() - started
            print(f"\n{count} webhooks in {elapsed:.2f}s: {count / elapsed:.0f} sends/s")
            assert len(inbox.by_key) == count
            await harness.aclose()
        finally:
            await launcher.stop_all()
