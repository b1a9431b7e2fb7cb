"""Runs moved through journeys inside one transaction, and the events that moving them emits."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from libs.common.events import Event, JourneyRef, MessageRequested, ProfileChangeRequested
from services.journey import metrics
from services.journey.engine import (
    Run,
    Steps,
    Trigger,
    advance,
    enter,
    exit_run,
    leave_wait,
    may_enter,
    reach_goal,
)
from services.journey.graph import Journey
from services.journey.profiles import ProfileFacts
from services.journey.store import JourneyStore

SOURCE = "closeloop/journey"


class Runner:
    """Enters, advances and exits runs over one transaction's store; collects what they emit.

    The caller holds the lock of every profile it passes in.
    """

    def __init__(self, store: JourneyStore, *, step_limit: int) -> None:
        self.store = store
        self.steps = Steps()
        self._step_limit = step_limit
        self._versions: dict[tuple[str, int], tuple[Journey, bool]] = {}

    async def version_of(self, run: Run) -> tuple[Journey, bool] | None:
        """The run's journey version and whether its journey is paused (None: deleted)."""
        key = (run.journey_id, run.version)
        if key not in self._versions:
            self._versions.update(await self.store.journey_versions([key]))
        return self._versions.get(key)

    async def enter(
        self, journey: Journey, facts: ProfileFacts, trigger: Trigger, now: datetime
    ) -> Run | None:
        """Start a run if the re-entry rule lets the profile in, and advance it."""
        previous = await self.store.latest_run(journey.id, facts.profile_id)
        if not may_enter(journey, previous, trigger.occurred_at):
            return None
        number = previous.number + 1 if previous else 1
        run = enter(journey, facts.profile_id, number, trigger, self.steps)
        metrics.ENTRIES.labels(journey.id).inc()
        self._versions[(journey.id, journey.version)] = (journey, False)
        await self._advance(journey, run, facts, now, paused=False)
        return run

    async def move_on(
        self,
        run: Run,
        facts: ProfileFacts,
        now: datetime,
        *,
        outcome: str,
        trigger: Trigger | None = None,
    ) -> None:
        """A waiting run moves on: `fired`, `matched`, `timed_out`, or `resumed` (held run)."""
        found = await self.version_of(run)
        if found is None:
            return
        journey, paused = found
        if outcome != "resumed":
            leave_wait(journey, run, self.steps, outcome)
        if trigger is not None:
            run.trigger = trigger
        run.status, run.due_at = "active", None
        await self._advance(journey, run, facts, now, paused=paused)

    async def exit(self, run: Run, reason: str) -> None:
        found = await self.version_of(run)
        if found is None:
            return
        exit_run(run, self.steps, reason)
        metrics.EXITS.labels(run.journey_id, reason).inc()
        await self.store.save_run(run, found[0])

    async def reach_goal(self, run: Run, at: datetime) -> None:
        found = await self.version_of(run)
        if found is None:
            return
        reach_goal(found[0], run, at, self.steps)
        if run.exit_reason == "goal":
            metrics.EXITS.labels(run.journey_id, "goal").inc()
        await self.store.save_run(run, found[0])

    async def _advance(
        self, journey: Journey, run: Run, facts: ProfileFacts, now: datetime, *, paused: bool
    ) -> None:
        advance(journey, run, facts, now, self.steps, paused=paused, step_limit=self._step_limit)
        if run.status == "exited" and run.exit_reason is not None:
            metrics.EXITS.labels(run.journey_id, run.exit_reason).inc()
        await self.store.save_run(run, journey)

    async def save_counters(self) -> None:
        """Add up the batch's counters (once, at the end: fewer rows locked, in key order)."""
        await self.store.add_counters(self.steps.counters)
        self.steps.counters.clear()

    def take_events(self, now: datetime) -> list[Event[Any]]:
        """The events the steps taken since the last call emit, in the order taken."""
        sends, self.steps.sends = self.steps.sends, []
        updates, self.steps.updates = self.steps.updates, []
        events: list[Event[Any]] = []
        for run, send in sends:
            metrics.SENDS.labels(run.journey_id, send.node.channel).inc()
            events.append(
                Event(
                    data=MessageRequested(
                        request_id=send.request_id,
                        journey=_ref(run, send.node.id),
                        profile_id=run.profile_id,
                        channel=send.node.channel,
                        template_id=send.node.template_id,
                        variables=send.variables,
                        idempotency_key=send.idempotency_key,
                        triggered_by=run.trigger.event_id,
                        behavior_at=run.trigger.occurred_at,
                    ),
                    key=run.profile_id,
                    source=SOURCE,
                )
            )
        for run, update in updates:
            node = update.node
            events.append(
                Event(
                    data=ProfileChangeRequested(
                        request_id=update.request_id,
                        profile_id=run.profile_id,
                        set_traits=dict(node.set_traits),
                        unset_traits=list(node.unset_traits),
                        add_tags=list(node.add_tags),
                        remove_tags=list(node.remove_tags),
                        journey=_ref(run, node.id),
                        occurred_at=now,
                        caused_by=run.trigger.event_id,
                    ),
                    key=run.profile_id,
                    source=SOURCE,
                )
            )
        return events


def _ref(run: Run, node_id: str) -> JourneyRef:
    return JourneyRef(journey_id=run.journey_id, journey_version=run.version, node_id=node_id)
