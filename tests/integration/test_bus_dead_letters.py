"""Poison messages land in the DLQ with their error, the consumer goes on, and replay works."""

from __future__ import annotations

import asyncio
import os
import sys

import httpx
import pytest

from libs.common import topics
from libs.common.bus import dlq
from libs.common.bus.reader import header
from libs.devstack.stack import Stack
from tests.integration.conftest import MakeCounter
from tests.integration.counter_service.harness import CounterHarness
from tests.integration.support import publish, publish_raw, read_topic, wait_for

pytestmark = pytest.mark.integration


async def _dead_letters_of(stack: Stack, counter: CounterHarness) -> list[dict[str, str]]:
    return [
        {name: header(record, name) for name in (dlq.ERROR_TYPE, dlq.ERROR, dlq.GROUP, "ce_id")}
        for record in await read_topic(stack.kafka_bootstrap, topics.DLQ)
        if header(record, dlq.SOURCE_TOPIC) == counter.input_topic
    ]


async def test_poison_goes_to_the_dlq_and_the_consumer_goes_on(
    stack: Stack, counter_service: MakeCounter
) -> None:
    counter = counter_service()
    await counter.start()
    good = [counter.behaviour(i, profiles=3) for i in range(10)]
    poison = counter.behaviour(10, profiles=3, poison=True)
    await publish(stack.kafka_bootstrap, [*good[:5], poison], topic=counter.input_topic)
    await publish_raw(
        stack.kafka_bootstrap,
        counter.input_topic,
        key=b"someone",
        value=b"{not json",
        headers=[("ce_id", b"broken-1"), ("ce_type", b"behavior.occurred")],
    )
    # A type the counter does not handle is passed over on its ce_type header, undecoded: the
    # consumer that handles it judges it. Decoded, it would be a dead letter before broken-2,
    # which follows it on the same partition.
    for event_id, event_type in (
        (b"not-ours-1", b"profile.updated"),
        (b"broken-2", b"behavior.occurred"),
    ):
        await publish_raw(
            stack.kafka_bootstrap,
            counter.input_topic,
            key=b"someone",
            value=b"{not json either",
            headers=[("ce_id", event_id), ("ce_type", event_type)],
        )
    await publish(stack.kafka_bootstrap, good[5:], topic=counter.input_topic)

    async def good_ones_applied() -> bool:
        return await counter.events_applied() == len(good)

    await wait_for(good_ones_applied, within=60, what="every good event applied")

    async def three_dead_letters() -> bool:
        return len(await _dead_letters_of(stack, counter)) >= 3

    await wait_for(three_dead_letters, within=30, what="three dead letters")
    letters = {letter["ce_id"]: letter for letter in await _dead_letters_of(stack, counter)}
    assert set(letters) == {poison.id, "broken-1", "broken-2"}
    assert letters[poison.id][dlq.ERROR_TYPE] == "PoisonEvent"
    assert "poison by design" in letters[poison.id][dlq.ERROR]
    assert letters[poison.id][dlq.GROUP] == counter.group
    assert letters["broken-1"][dlq.ERROR_TYPE] == "invalid_event"
    assert "ce_source" in letters["broken-1"][dlq.ERROR]
    async with httpx.AsyncClient(base_url=counter.process.url) as client:
        assert (await client.get("/healthz")).status_code == 200


async def test_a_run_of_unprocessable_events_is_dead_lettered_not_taken_for_an_outage(
    stack: Stack, counter_service: MakeCounter
) -> None:
    counter = counter_service()
    await counter.start()
    # More in a row than CLOSELOOP_DLQ_MAX_CONSECUTIVE_FAILURES: an unexpected error this often
    # would mean the dependency is down; an UnprocessableEvent says the events are the problem.
    unprocessable = [counter.behaviour(i, profiles=1, unprocessable=True) for i in range(8)]
    good = [counter.behaviour(i, profiles=1) for i in range(8, 12)]
    await publish(stack.kafka_bootstrap, [*unprocessable, *good], topic=counter.input_topic)

    async def good_ones_applied() -> bool:
        return await counter.events_applied() == len(good)

    await wait_for(good_ones_applied, within=60, what="the good events after the bad run")
    letters = await _dead_letters_of(stack, counter)
    assert sorted(letter["ce_id"] for letter in letters) == sorted(e.id for e in unprocessable)
    assert {letter[dlq.ERROR_TYPE] for letter in letters} == {"UnprocessableEvent"}


async def test_replay_redelivers_dead_letters_once_the_cause_is_fixed(
    stack: Stack, counter_service: MakeCounter
) -> None:
    counter = counter_service()
    await counter.start()
    poison = counter.behaviour(0, profiles=1, poison=True)
    await publish(stack.kafka_bootstrap, [poison], topic=counter.input_topic)

    async def dead_lettered() -> bool:
        return len(await _dead_letters_of(stack, counter)) == 1

    await wait_for(dead_lettered, within=60, what="the poison event in the DLQ")
    assert await counter.events_applied() == 0

    # The fix is deployed: the same service, now accepting what it rejected.
    await counter.redeploy(counter_reject_poison=False)
    output = await _run_replay(stack, counter.group)
    assert "1 dead letter(s) replayed" in output

    async def applied() -> bool:
        return await counter.events_applied() == 1

    await wait_for(applied, within=60, what="the replayed event applied")
    assert "0 dead letter(s) replayed" in await _run_replay(stack, counter.group)


async def _run_replay(stack: Stack, group: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "libs.common.bus.dlq",
        "replay",
        "--group",
        group,
        env={**os.environ, **stack.env()},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    stdout, _ = await asyncio.wait_for(process.communicate(), timeout=120)
    output = stdout.decode()
    assert process.returncode == 0, output
    return output
