"""A consumer that stops polling says where its loop waits, once per stall."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import pytest

from libs.common.bus import Batch
from libs.common.bus import consumer as consumer_module
from libs.devstack.stack import Stack
from tests.events import behaviour
from tests.integration.support import consuming, publish, throwaway_bus, wait_for

pytestmark = pytest.mark.integration


async def test_a_stalled_consumer_logs_where_its_loop_waits(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(consumer_module, "_LIVENESS_SECONDS", 0.5)
    entered, release = asyncio.Event(), asyncio.Event()

    async def handler_that_waits(batch: Batch) -> None:
        entered.set()
        await release.wait()

    async with (
        throwaway_bus(stack.kafka_bootstrap, stack.database_url, "stall") as bus,
        consuming(bus, handler_that_waits) as consumer,
    ):
        await publish(stack.kafka_bootstrap, [behaviour("prf_stall")], bus.topic)
        await wait_for(_is_set(entered), within=30, what="the handler to be entered")
        with caplog.at_level(logging.ERROR, logger=consumer_module.__name__):
            await wait_for(_stalled(consumer), within=10, what="the consumer to stall")
            assert not consumer.is_alive()  # asked again: still one report
        release.set()
    reports = [r for r in caplog.records if r.getMessage().startswith("the consumer has not")]
    assert len(reports) == 1
    where = reports[0].__dict__["loop_waits_at"]
    print(where)
    assert "handler_that_waits" in where


def _is_set(event: asyncio.Event) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return event.is_set()

    return check


def _stalled(consumer: consumer_module.EventConsumer) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not consumer.is_alive()

    return check
