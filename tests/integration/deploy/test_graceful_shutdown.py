"""SIGTERM mid-batch: the batch in hand is finished, within the Kubernetes grace period."""

from __future__ import annotations

import signal
import time
from collections import defaultdict

import pytest

from libs.devstack.stack import Stack
from tests.integration.conftest import MakeCounter
from tests.integration.support import publish, wait_for
from tests.unit.deploy.deploy_files import grace_period_seconds, prestop_seconds

pytestmark = pytest.mark.integration

EVENTS = 1500
PROFILES = 30


async def test_sigterm_mid_batch_finishes_the_batch_within_the_grace_period(
    stack: Stack, counter_service: MakeCounter
) -> None:
    # SIGTERM arrives after the preStop sleep: that is what is left of the grace period.
    budget = grace_period_seconds() - prestop_seconds()
    counter = counter_service(batch_max_records=250, counter_handler_delay_ms=1500)
    await counter.start()
    events = [counter.behaviour(i, PROFILES) for i in range(EVENTS)]
    expected: dict[str, int] = defaultdict(int)
    for event in events:
        expected[event.key] += event.data.properties["amount"]
    await publish(stack.kafka_bootstrap, events, topic=counter.input_topic)

    async def batch_in_flight() -> bool:
        return await counter.transaction_open()

    await wait_for(batch_in_flight, within=60, what="a batch in flight")
    applied_at_sigterm = await counter.events_applied()
    started = time.monotonic()
    code = await counter.process.stop(grace=float(budget))
    took = time.monotonic() - started
    applied_at_exit = await counter.events_applied()
    print(
        f"\nSIGTERM mid-batch: exit code {code} after {took:.1f}s (budget {budget}s), "
        f"applied {applied_at_sigterm} -> {applied_at_exit} of {EVENTS}"
    )
    # uvicorn re-raises the SIGTERM it handled once shut down: -15 is a clean exit, -9 a kill.
    assert code in (0, -signal.SIGTERM), f"exit code {code}: killed at the deadline, or crashed"
    assert took < budget
    assert applied_at_exit > applied_at_sigterm, "the batch in hand was not finished"
    assert not await counter.transaction_open()

    counter.process.start()
    await counter.process.wait_ready(timeout=60)

    async def all_applied() -> bool:
        return await counter.events_applied() >= EVENTS

    await wait_for(all_applied, within=180, what=f"{EVENTS} events applied after the restart")
    assert await counter.events_applied() == EVENTS, "an event was applied twice"
    assert await counter.totals() == expected
