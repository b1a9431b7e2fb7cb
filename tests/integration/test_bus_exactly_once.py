"""A consumer killed by SIGKILL mid-batch loses nothing and applies nothing twice."""

from __future__ import annotations

from collections import Counter, defaultdict

import pytest

from libs.common import topics
from libs.common.bus.reader import header
from libs.common.events import decode
from libs.common.events.profile import ProfileUpdated
from libs.devstack.stack import Stack
from tests.integration.conftest import MakeCounter
from tests.integration.support import publish, read_topic, wait_for

pytestmark = pytest.mark.integration

EVENTS = 4000
PROFILES = 40


async def test_sigkill_mid_batch_applies_every_event_exactly_once(
    stack: Stack, counter_service: MakeCounter
) -> None:
    counter = counter_service(batch_max_records=250, counter_handler_delay_ms=150)
    await counter.start()
    events = [counter.behaviour(i, PROFILES) for i in range(EVENTS)]
    expected: dict[str, int] = defaultdict(int)
    for event in events:
        expected[event.key] += event.data.properties["amount"]
    await publish(stack.kafka_bootstrap, events, topic=counter.input_topic)

    async def mid_batch() -> bool:
        return await counter.events_applied() > 0 and await counter.transaction_open()

    await wait_for(mid_batch, within=60, what="a batch in flight after some were committed")
    applied_before_kill = await counter.events_applied()
    assert await counter.process.kill() == -9
    assert applied_before_kill < EVENTS, "the kill must land before the input is exhausted"

    counter.process.start()
    await counter.process.wait_ready(timeout=60)

    async def all_applied() -> bool:
        return await counter.events_applied() >= EVENTS

    await wait_for(all_applied, within=180, what=f"{EVENTS} events applied after the restart")
    # Redeliveries come first in each partition, so once every event has been applied any
    # duplicate would already show as an excess here.
    assert await counter.events_applied() == EVENTS
    assert await counter.totals() == expected

    async def outbox_empty() -> bool:
        return await counter.outbox_backlog() == 0

    await wait_for(outbox_empty, within=60, what="the outbox relay to publish everything")
    outputs = [
        record
        for record in await read_topic(stack.kafka_bootstrap, topics.PROFILE)
        if record.key and record.key.decode().startswith(counter.run_id)
    ]
    ids_per_input: dict[str, set[str]] = defaultdict(set)
    for record in outputs:
        updated = decode(record.key, record.value, record.headers).data
        assert isinstance(updated, ProfileUpdated)
        assert updated.caused_by is not None
        ids_per_input[updated.caused_by].add(header(record, "ce_id"))
    copies = Counter(header(record, "ce_id") for record in outputs)
    print(
        f"\naccepted={EVENTS} applied_before_kill={applied_before_kill} "
        f"effects={await counter.events_applied()} output_messages={len(outputs)} "
        f"distinct_outputs={len(copies)} redelivered_copies={len(outputs) - len(copies)}"
    )
    assert set(ids_per_input) == {event.id for event in events}
    assert all(len(ids) == 1 for ids in ids_per_input.values()), "an input caused two outputs"
