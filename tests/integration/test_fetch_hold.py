"""The fetch-hold benchmark returns every message it sends, and times each one."""

from __future__ import annotations

import pytest

from bench import fetch_hold
from libs.devstack.stack import Stack

pytestmark = pytest.mark.integration


async def test_each_message_sent_is_returned_by_a_poll_and_timed(stack: Stack) -> None:
    hold = await fetch_hold.measure(stack.kafka_bootstrap, fetch_max_wait_ms=25, messages=5)
    assert hold.fetch_max_wait_ms == 25
    assert len(hold.delays_ms) == 5
    assert all(0 < delay < 5_000 for delay in hold.delays_ms)
    assert hold.share(0.5) <= hold.share(0.99) <= max(hold.delays_ms)
