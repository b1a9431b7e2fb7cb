"""A provider in a storm (server errors, 429s with Retry-After): each message still sent once."""

from __future__ import annotations

import uuid
from collections import Counter

import pytest

from tests.events import rendered
from tests.integration.dispatch.conftest import Dispatch
from tests.integration.dispatch.providers import Storm
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration


async def test_a_throttled_message_waits_for_retry_after_and_each_is_delivered_once(
    dispatch: Dispatch,
) -> None:
    name = f"storm_{uuid.uuid4().hex[:8]}"
    await dispatch.harness.channel(
        name, "webhook", {"url": f"{dispatch.base_url}/hook/{name}", "secret": "s"}
    )
    # Of every 4 requests, one answers 503 and one 429 with `Retry-After: 2`; dispatch's own
    # backoff here is 0.2 s, so a retry that ignored the header would come back 10x too soon.
    storm = Storm(every=4, retry_after_s=2)
    dispatch.providers.storms["webhook"] = storm
    messages = [rendered(name) for _ in range(4)]
    keys = {message.data.idempotency_key for message in messages}
    try:
        await dispatch.harness.publish(*messages)

        async def all_delivered_or_one_early() -> bool:
            delivered = {d.key for d in dispatch.providers.deliveries if d.channel == "webhook"}
            return keys <= delivered or bool(storm.early)

        await wait_for(all_delivered_or_one_early, within=60, what="the storm's messages sent")
    finally:
        dispatch.providers.storms.pop("webhook", None)
    assert storm.early == [], "a throttled message came back before its Retry-After"
    assert storm.errors >= 1 and storm.throttled >= 1, "the storm refused nothing"
    copies = Counter(d.key for d in dispatch.providers.deliveries if d.key in keys)
    assert copies == dict.fromkeys(keys, 1)
