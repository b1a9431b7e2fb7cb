"""Durable journey timers: waits end, wait_for nodes time out, held runs resume."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.bus import OutboxRelay, write_outbox
from libs.common.db import create_sessions, session_transaction
from libs.common.lifecycle import DueWorkLoop
from services.journey import metrics
from services.journey.graph import WaitFor
from services.journey.learning import Policy
from services.journey.runner import Runner
from services.journey.store import DueTimer, JourneyStore


class JourneyTimers(DueWorkLoop):
    """Claims due timers (`FOR UPDATE SKIP LOCKED`, so replicas share them), moves their runs
    on, and writes what that emits to the outbox in the same transaction: a crash before the
    commit leaves the timers due, a crash after it has already published nothing twice.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        relay: OutboxRelay,
        schema: str,
        *,
        poll_interval_ms: int,
        batch_size: int,
        step_limit: int,
        policy: Policy,
    ) -> None:
        super().__init__(
            f"journey-timers:{schema}",
            poll_interval_seconds=poll_interval_ms / 1000,
            batch_size=batch_size,
        )
        self._sessions = create_sessions(engine)
        self._relay = relay
        self._schema = schema
        self._step_limit = step_limit
        self._policy = policy

    async def work_due(self) -> int:
        """Handle one batch of due timers; how many were claimed."""
        async with session_transaction(self._sessions) as session:
            store = JourneyStore(session, self._schema)
            claimed = await store.claim_due_timers(self.batch_size)
            if not claimed:
                return 0
            metrics.TIMERS_DUE.inc(len(claimed))
            runner = Runner(store, step_limit=self._step_limit, policy=self._policy)
            await _fire(runner, claimed)
            events = runner.take_events(datetime.now(UTC))
            await runner.save()
            await write_outbox(session, self._schema, events)
        if events:
            self._relay.notify()
        return len(claimed)


async def _fire(runner: Runner, claimed: list[DueTimer]) -> None:
    # A profile a consumer batch holds right now is left for the next poll, not waited for:
    # waiting while holding the timers' row locks could deadlock with that batch.
    store = runner.store
    profiles = await store.lock_profiles_if_free({timer.profile_id for timer in claimed})
    now = datetime.now(UTC)
    free = [timer for timer in claimed if timer.profile_id in profiles]
    await store.delete_timers(free)
    runs = await store.lock_runs([(t.journey_id, t.profile_id, t.run) for t in free])
    await runner.add_runs(runs.values())
    for timer in free:
        saved = runs.get((timer.journey_id, timer.profile_id, timer.run))
        run = saved.run if saved is not None else None
        if run is None or run.node_id != timer.node_id or not run.live:
            continue  # the run moved on or ended since; the timer was stale
        metrics.TIMERS_FIRED.inc()
        metrics.TIMER_LATENESS.observe(max(0.0, (now - timer.due_at).total_seconds()))
        found = await runner.version_of(run)
        if found is None:
            continue
        if run.status == "held":
            outcome = "resumed"
        elif isinstance(found[0].nodes.get(timer.node_id), WaitFor):
            outcome = "timed_out"
        else:
            outcome = "fired"
        # The wait's end is when the run moved, not when the worker got to it.
        run.trigger = dataclasses.replace(run.trigger, occurred_at=timer.due_at)
        await runner.move_on(
            run, profiles[timer.profile_id], max(now, timer.due_at), outcome=outcome
        )
