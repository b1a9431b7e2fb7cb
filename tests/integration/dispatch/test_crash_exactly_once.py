"""SIGKILL dispatch while it sends: every message arrives, and the copies a receiver that does
not deduplicate sees twice are at most the sends that were in flight at the kill.

Counted raw: at the SMTP server (which keeps every mail it accepts, whatever its Message-ID)
and at a webhook receiver's raw requests (not its by-key store). The process that takes the
dead one's rows over does so by its heartbeat, within seconds: every bound below is well under
the one-minute lease that used to be the only way a dead sender's rows were found.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable

import pytest

from libs.devstack.pytest_plugin import ServiceLauncher
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.events import rendered
from tests.integration.dispatch.conftest import ALLOW_LOOPBACK, FAST, warm_up
from tests.integration.dispatch.harness import DispatchHarness
from tests.integration.dispatch.providers import Providers, running_providers
from tests.integration.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]
MESSAGES = 1000
IN_FLIGHT = 16
# Well under the old lease (60 s), well over the takeover (5 s by default) and the sends left.
TAKEN_OVER_WITHIN = 40.0
JOURNAL = {**ALLOW_LOOPBACK, **FAST, "CLOSELOOP_DISPATCH_MAX_IN_FLIGHT": str(IN_FLIGHT)}


def _duplicates(copies: Counter[str]) -> int:
    return sum(count - 1 for count in copies.values())


def _mail_copies(providers: Providers, recipients: set[str]) -> Counter[str]:
    """Every mail the SMTP server accepted for these recipients, by Message-ID."""
    return Counter(m["Message-ID"] for m in providers.mail if m["To"] in recipients)


async def _until(done: Callable[[], bool], within: float, what: str) -> None:
    async def check() -> bool:
        return done()

    await wait_for(check, within=within, what=what, every=0.1)


async def _dispatch(
    stack: Stack, launcher: ServiceLauncher, name: str, base_url: str, providers: Providers
) -> tuple[ServiceProcess, DispatchHarness]:
    process = await launcher(
        "services.dispatch", name=name, migrate=True, env=JOURNAL, ready_timeout=60
    )
    harness = DispatchHarness(stack, process)
    await warm_up(harness, providers, base_url, uuid.uuid4().hex[:8])
    return process, harness


async def test_sigkill_mid_send_duplicates_at_most_the_sends_in_flight_at_smtp(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    launcher = ServiceLauncher(stack, tmp_path_factory.mktemp("dispatch-crash-logs"))
    run = uuid.uuid4().hex[:8]
    async with running_providers() as (providers, base_url, smtp_port):
        try:
            process, harness = await _dispatch(
                stack, launcher, f"dispatch_crash_{run}", base_url, providers
            )
            name = f"crash_{run}"
            config = {
                "host": "127.0.0.1",
                "port": smtp_port,
                "tls": "none",
                "from_address": "news@shop.example.com",
            }
            await harness.channel(name, "email", config)
            messages = [
                rendered(name, recipient=f"p{n}.{run}@example.com") for n in range(MESSAGES)
            ]
            recipients = {m.data.recipient for m in messages if m.data.recipient}
            await harness.publish(*messages)
            await _until(
                lambda: len(_mail_copies(providers, recipients)) >= MESSAGES // 5,
                within=60,
                what="a fifth of the mails to arrive",
            )
            await process.kill()
            killed_at = sum(_mail_copies(providers, recipients).values())
            process.start()
            await process.wait_ready(60)
            restarted = time.monotonic()
            try:
                await _until(
                    lambda: len(_mail_copies(providers, recipients)) >= MESSAGES,
                    within=TAKEN_OVER_WITHIN,
                    what="every mail to arrive after the restart",
                )
            finally:
                copies = _mail_copies(providers, recipients)
                print(
                    f"\nSMTP: {sum(copies.values())} mails accepted, {len(copies)} distinct, "
                    f"{_duplicates(copies)} duplicates (in flight at most {IN_FLIGHT}; killed "
                    f"after {killed_at}); all in {time.monotonic() - restarted:.1f}s after "
                    "the restart"
                )
            assert len(copies) == MESSAGES
            assert _duplicates(copies) <= IN_FLIGHT
            await harness.aclose()
        finally:
            await launcher.stop_all()


async def _taken_over(harness: DispatchHarness) -> float:
    """Rows the process claimed from a sender whose heartbeat had stopped, from its metrics."""
    response = await harness.http.get("/metrics")
    response.raise_for_status()
    return sum(
        float(line.rpartition(" ")[2])
        for line in response.text.splitlines()
        if line.startswith("closeloop_dispatch_taken_over_sends_total ")
    )


async def test_a_second_process_takes_over_a_killed_ones_claimed_rows(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Two processes share the ledger; one is killed and not restarted: the rows it had
    claimed go out from the other, which finds them by the silence of its heartbeat."""
    run = uuid.uuid4().hex[:8]
    schema = f"dispatch_takeover_{run}"
    async with running_providers() as (providers, base_url, _):
        first = ServiceLauncher(stack, tmp_path_factory.mktemp("dispatch-first-logs"))
        second = ServiceLauncher(stack, tmp_path_factory.mktemp("dispatch-second-logs"))
        try:
            process, harness = await _dispatch(stack, first, schema, base_url, providers)
            other, other_harness = await _dispatch(stack, second, schema, base_url, providers)
            name = f"takeover_{run}"
            # Slow enough that each process holds a claimed batch (500 rows) when one dies.
            await harness.channel(
                name,
                "webhook",
                {"url": f"{base_url}/hook/{name}", "secret": "s"},
                rate_per_second=100,
            )
            inbox = providers.webhook(name)
            await harness.publish(*(rendered(name) for _ in range(MESSAGES)))
            await _until(lambda: len(inbox.raw) >= 100, within=60, what="a first hundred sends")
            await process.kill()
            killed = time.monotonic()
            try:
                await _until(
                    lambda: len(inbox.keys) >= MESSAGES,
                    within=TAKEN_OVER_WITHIN,
                    what="the other process to send every message",
                )
            finally:
                print(
                    f"\nwebhook: {len(inbox.raw)} raw requests, {len(inbox.keys)} keys, "
                    f"{_duplicates(inbox.keys)} duplicates (in flight at most {IN_FLIGHT}); "
                    f"all in {time.monotonic() - killed:.1f}s after the kill"
                )
            assert _duplicates(inbox.keys) <= IN_FLIGHT
            assert await _taken_over(other_harness) > 0
            assert other.running
            await harness.aclose()
            await other_harness.aclose()
        finally:
            await second.stop_all()
            await first.stop_all()


async def _cpu_seconds(harness: DispatchHarness) -> float:
    """The dispatch process's CPU time so far, from its metrics."""
    response = await harness.http.get("/metrics")
    response.raise_for_status()
    line = next(
        line for line in response.text.splitlines() if line.startswith("process_cpu_seconds_total ")
    )
    return float(line.rpartition(" ")[2])


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
            cpu_before = await _cpu_seconds(harness)

            async def done() -> bool:
                return len(inbox.by_key) >= count

            await wait_for(done, within=180, what="every message", every=0.05)
            elapsed = time.monotonic() - started
            cpu = await _cpu_seconds(harness) - cpu_before
            print(
                f"\n{count} webhooks in {elapsed:.2f}s: {count / elapsed:.0f} sends/s, "
                f"{cpu / count * 1e6:.0f} us of dispatch CPU per send"
            )
            assert len(inbox.by_key) == count
            await harness.aclose()
        finally:
            await launcher.stop_all()
