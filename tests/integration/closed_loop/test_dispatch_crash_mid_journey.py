"""SIGKILL dispatch while a journey sends to 1,000 people: after a restart every person has
exactly one message at the receiver."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import orjson
import pytest

from tests.events import rendered
from tests.integration.closed_loop.harness import ClosedLoop, now, unique
from tests.integration.closed_loop.services import webhook_journey
from tests.integration.support import publish, wait_for

pytestmark = pytest.mark.integration

PEOPLE = 1000
_BATCH = 500


async def test_sigkill_of_dispatch_mid_journey_leaves_one_message_per_person(
    loop: ClosedLoop,
) -> None:
    run = unique("bulk")
    journey_id = await webhook_journey(
        loop, run, {"trait": "bulk_run", "value": run}, {"to": "{{ profile.id }}"}
    )
    inbox = loop.providers.webhook("webhook")

    def ours(messages: Any) -> list[dict[str, Any]]:
        return [m for m in messages if m["headers"]["idempotency-key"].startswith(f"{journey_id}:")]

    started = time.monotonic()
    for first in range(0, PEOPLE, _BATCH):
        calls = [
            {"type": "identify", "userId": f"{run}_{i}", "traits": {"bulk_run": run}}
            for i in range(first, first + _BATCH)
        ]
        await loop.track("batch", batch=calls, sentAt=now())

    async def sending() -> bool:
        return len(ours(inbox.raw)) >= PEOPLE // 5

    await wait_for(sending, within=120, what="a fifth of the messages at the receiver", every=0.05)
    dispatch = loop.processes["dispatch"]
    await dispatch.kill()
    arrived_before_kill = len(ours(inbox.raw))
    dispatch.start()
    await dispatch.wait_ready(60)

    async def everyone_reached() -> bool:
        return len(ours(inbox.by_key.values())) >= PEOPLE

    await wait_for(everyone_reached, within=180, what="a message for every person", every=0.2)
    stored = ours(inbox.by_key.values())
    raw = ours(inbox.raw)
    per_person = Counter(orjson.loads(m["body"])["payload"]["to"] for m in stored)
    print(
        f"\njourney to {PEOPLE} people, dispatch killed after {arrived_before_kill} requests: "
        f"stored {len(stored)}, distinct people {len(per_person)}, raw requests {len(raw)}, "
        f"retransmissions of a key {len(raw) - len(stored)}, "
        f"{time.monotonic() - started:.1f}s in all"
    )
    assert len(stored) == PEOPLE
    assert len(per_person) == PEOPLE
    assert max(per_person.values()) == 1
    await _dispatch_consumes_again(loop)


async def _dispatch_consumes_again(loop: ClosedLoop) -> None:
    """After the restart, dispatch has rejoined its group: a new message is sent too."""
    probe = rendered("webhook")
    await publish(loop.bootstrap, [probe])

    async def probe_sent() -> bool:
        return probe.data.idempotency_key in loop.providers.webhook("webhook").by_key

    await wait_for(probe_sent, within=120, what="dispatch to consume a new message again")
