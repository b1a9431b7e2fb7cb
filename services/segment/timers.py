"""Durable window timers: re-evaluate a membership when a behaviour leaves its window."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.bus import OutboxRelay, write_outbox
from libs.common.db import create_sessions, session_transaction
from libs.common.events import Event
from libs.common.lifecycle import DueWorkLoop
from services.segment.membership import membership_event, reevaluate_and_record
from services.segment.rules import EVALUATE_PREFIX, Transition
from services.segment.store import DueTimer, SegmentStore


class WindowTimers(DueWorkLoop):
    """Claims due timers (`FOR UPDATE SKIP LOCKED`, so replicas share them), re-evaluates those
    memberships, and emits the exits (or entries) through the outbox in the same transaction.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        relay: OutboxRelay,
        schema: str,
        *,
        poll_interval_ms: int,
        batch_size: int,
    ) -> None:
        super().__init__(
            f"window-timers:{schema}",
            poll_interval_seconds=poll_interval_ms / 1000,
            batch_size=batch_size,
        )
        self._sessions = create_sessions(engine)
        self._relay = relay
        self._schema = schema

    async def work_due(self) -> int:
        """Handle one batch of due timers; how many were claimed."""
        async with session_transaction(self._sessions) as session:
            store = SegmentStore(session, self._schema)
            await store.hold_evaluation_lock(exclusive=False)
            claimed = await store.claim_due_timers(self.batch_size)
            if not claimed:
                return 0
            events = await _fire(store, claimed)
            await write_outbox(session, self._schema, events)
        if events:
            self._relay.notify()
        return len(claimed)


async def _fire(store: SegmentStore, claimed: Sequence[DueTimer]) -> list[Event[Any]]:
    # A profile a consumer batch holds right now is left for the next poll, not waited for:
    # waiting while holding the timers' row locks could deadlock with that batch.
    profiles = await store.lock_profiles_if_free({timer.profile_id for timer in claimed})
    ready = [timer for timer in claimed if timer.profile_id in profiles]
    await store.delete_timers(ready)
    touched: dict[str, set[str]] = {}
    for timer in ready:
        touched.setdefault(timer.profile_id, set()).add(EVALUATE_PREFIX + timer.segment_id)
    now = max([datetime.now(UTC), *(timer.due_at for timer in ready)])
    transitions = await reevaluate_and_record(store, profiles, touched, now)
    due = {(timer.segment_id, timer.profile_id): timer.due_at for timer in ready}
    return [_expired(transition, due, now) for transition in transitions]


def _expired(
    transition: Transition, due: dict[tuple[str, str], datetime], now: datetime
) -> Event[Any]:
    # The window's end is when the change happened, not when the worker got to it.
    occurred_at = due.get((transition.segment_id, transition.profile_id), now)
    return membership_event(transition, occurred_at=occurred_at, reason="window_expired")
