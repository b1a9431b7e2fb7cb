"""The enrolment worker: enters a segment's current members into a journey version, a batch at
a time, each run held at the start until its turn (a durable timer)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncEngine

from libs.common.db import create_sessions, session_transaction
from libs.common.lifecycle import DueWorkLoop
from services.journey.enrolment import Enrolment
from services.journey.graph import BestTime, Journey, Send
from services.journey.learning import Policy
from services.journey.runner import Runner
from services.journey.store import JourneyStore


class MemberEnrolments(DueWorkLoop):
    """Claims a due enrolment (`FOR UPDATE SKIP LOCKED`, so replicas share them), takes the
    next members after its cursor, schedules their runs, and moves the cursor, all in one
    transaction: a crash before the commit takes the same members again, after it the next
    ones. Nobody enters twice: the members' profiles are locked, as consumer batches lock
    them, and the re-entry rule is asked of their runs.
    """

    def __init__(
        self,
        engine: AsyncEngine,
        schema: str,
        *,
        poll_interval_ms: int,
        batch_size: int,
        lookahead_seconds: float,
        step_limit: int,
        policy: Policy,
    ) -> None:
        super().__init__(
            f"journey-enrolments:{schema}",
            poll_interval_seconds=poll_interval_ms / 1000,
            batch_size=batch_size,
        )
        self._sessions = create_sessions(engine)
        self._schema = schema
        self._lookahead = timedelta(seconds=lookahead_seconds)
        self._step_limit = step_limit
        self._policy = policy

    async def work_due(self) -> int:
        """Take one batch of one enrolment; how many members it took (a full batch: the loop
        looks again at once, for the rest of it or another enrolment due)."""
        async with session_transaction(self._sessions) as session:
            store = JourneyStore(session, self._schema)
            enrolment = await store.claim_enrolment()
            if enrolment is None:
                return 0
            now = datetime.now(UTC)
            taken = await self._take_members(store, enrolment, now)
            await store.save_enrolment(enrolment)
        return taken

    async def _take_members(self, store: JourneyStore, enrolment: Enrolment, now: datetime) -> int:
        enrolment.start(now, self._lookahead)
        room = enrolment.room(now, self._lookahead, self.batch_size)
        if room == 0:
            enrolment.taken([], room, now, self._lookahead)
            return 0
        found = await store.journey_versions([(enrolment.journey_id, enrolment.version)])
        version = found.get((enrolment.journey_id, enrolment.version))
        if version is None:  # the journey is gone (its enrolments go with it)
            enrolment.status = "cancelled"
            return 0
        journey = version[0]
        members = await store.members_after(enrolment.segment_id, enrolment.cursor, room)
        # A member a consumer batch holds right now ends this batch, not waited for: waiting
        # while holding the enrolment's row could deadlock with that batch (an erasure moves
        # the cursor). The cursor stops before them; the next look takes them.
        profiles = await store.lock_profiles_if_free(members)
        free = list(itertools.takewhile(lambda member: member in profiles, members))
        runner = Runner(store, step_limit=self._step_limit, policy=self._policy)
        await runner.load_runs(free, None)
        best_time = _best_time(journey, enrolment)
        for profile_id in free:
            zone = profiles[profile_id].timezone
            if best_time is not None:
                assert enrolment.started_at is not None
                await runner.schedule_at_best_time(
                    journey, profile_id, zone, best_time, enrolment.started_at, enrolment.take_slot
                )
                continue
            instant = enrolment.instant_for(zone)
            if runner.may_enter(journey, profile_id, instant):
                runner.schedule(journey, profile_id, enrolment.take_slot(instant))
        await runner.save()
        enrolment.taken(free, room if free == members else len(free), now, self._lookahead)
        return len(free)


def _best_time(journey: Journey, enrolment: Enrolment) -> BestTime | None:
    """At best hours: on the channel of the journey's first send (a broadcast's only one)."""
    if enrolment.best_time_within is None:
        return None
    start = journey.nodes[journey.start]
    assert isinstance(start, Send)
    return BestTime(start.options[0].channel, enrolment.best_time_within)
