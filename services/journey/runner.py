"""Runs moved through journeys inside one transaction, and the events that moving them emits."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable
from datetime import datetime
from typing import Any

from libs.common.events import (
    ContactRule,
    Event,
    JourneyRef,
    MessageRequested,
    ProfileChangeRequested,
)
from libs.common.profiles import ProfileFacts
from services.journey import metrics
from services.journey.engagement import EngagementBook, MessageRecord
from services.journey.engine import (
    Run,
    Steps,
    Trigger,
    advance,
    choose_send_time,
    enter,
    exit_run,
    fall_back,
    hold_until,
    leave_wait,
    may_enter,
    reach_goal,
)
from services.journey.graph import BestTime, Journey
from services.journey.learning import PersonCounts, Policy, people_counts
from services.journey.profiles import zone_named
from services.journey.runs import RunBook, SavedRun
from services.journey.store import JourneyStore

SOURCE = "closeloop/journey"


class Runner:
    """Enters, advances and exits runs over one transaction's store; collects what they emit,
    and counts the engagement its outcomes show.

    The caller holds the lock of every profile it passes in, and loads their runs first (or
    adds the runs it locked itself): runs are changed in memory and written by `save`. The
    engagement counts of those profiles are loaded, all at once, when a journey that learns
    first needs them; what the transaction counted so far is written first, so a decision sees
    the outcomes that came before it.
    """

    def __init__(self, store: JourneyStore, *, step_limit: int, policy: Policy) -> None:
        self.store = store
        self.runs = RunBook()
        self.steps = Steps()
        self._step_limit = step_limit
        self._counts: dict[str, PersonCounts] = {}
        self._uncounted: set[str] = set()
        self._learning = policy.learning(self._counts)
        self._targeted: list[MessageRecord] = []
        self._book = EngagementBook([])
        self._versions: dict[tuple[str, int], tuple[Journey, bool]] = {}
        # Metrics are added up per batch: one labelled increment per label set, not per run.
        self._entries: Counter[str] = Counter()
        self._exits: Counter[tuple[str, str]] = Counter()
        self._sends: Counter[tuple[str, str]] = Counter()
        self._deleted: set[tuple[str, int]] = set()
        self._goals_since: datetime | None = None

    async def load_runs(self, profile_ids: Collection[str], goals_since: datetime | None) -> None:
        """Load what the profiles' events will ask about their runs (goals: for behaviours
        from `goals_since` on), and those runs' versions."""
        self._goals_since = goals_since
        self._uncounted.update(profile_ids)
        await self.add_runs(await self.store.runs_of(profile_ids, goals_since))

    async def add_runs(self, loaded: Iterable[SavedRun]) -> None:
        """Runs as loaded (or locked) from the database; their versions are loaded with them."""
        wanted: set[tuple[str, int]] = set()
        for saved in loaded:
            self.runs.add(saved.run, saved.goal_until)
            wanted.add((saved.run.journey_id, saved.run.version))
            if saved.run.profile_id not in self._counts:
                self._uncounted.add(saved.run.profile_id)
        wanted -= self._versions.keys() | self._deleted
        if wanted:
            self._versions.update(await self.store.journey_versions(wanted))
            # Known as deleted from now on: not asked again for each of its runs.
            self._deleted.update(wanted - self._versions.keys())

    async def load_messages(self, request_ids: Collection[str]) -> None:
        """The records of the messages the outcomes to come name."""
        self._book = EngagementBook(await self.store.messages(request_ids))

    def count_engagement(
        self, facts: ProfileFacts, outcome: str, request_id: str, channel: str, at: datetime
    ) -> None:
        """Count an outcome of a message to the profile, at the hour of its time zone."""
        zone = zone_named(facts.timezone)
        if self._book.take(outcome, request_id, facts.profile_id, channel, at, zone):
            self._forget_counts({facts.profile_id})
            self._uncounted.add(facts.profile_id)  # loaded again, with this, when needed

    async def move_runs(self, survivor: str, merged: Collection[str]) -> None:
        """The merged profiles' runs (and their decisions and engagement) become the survivor's,
        numbered after its own."""
        await self.save_runs()  # the database renumbers them: it must hold them all first
        for other in merged:
            await self.store.move_profile(survivor, other)
        self.runs.forget({survivor, *merged})
        self._book.merge(survivor, merged)
        self._forget_counts({survivor, *merged})
        self._uncounted.add(survivor)  # its counts now hold the merged ones too
        await self.add_runs(await self.store.runs_of([survivor], self._goals_since))

    async def erase(self, profile_id: str) -> None:
        """Every run, decision and count of the profile, written or not, and its read model."""
        self.runs.forget({profile_id})
        self._book.forget(profile_id)
        self._forget_counts({profile_id})
        self.steps.decisions = [d for d in self.steps.decisions if d.profile_id != profile_id]
        self._targeted = [r for r in self._targeted if r.profile_id != profile_id]
        await self.store.erase_profile(profile_id)

    async def version_of(self, run: Run) -> tuple[Journey, bool] | None:
        """The run's journey version and whether its journey is paused (None: deleted)."""
        key = (run.journey_id, run.version)
        if key not in self._versions and key not in self._deleted:
            self._versions.update(await self.store.journey_versions([key]))
            if key not in self._versions:
                self._deleted.add(key)
        return self._versions.get(key)

    async def enter(
        self, journey: Journey, facts: ProfileFacts, trigger: Trigger, now: datetime
    ) -> Run | None:
        """Start a run if the re-entry rule lets the profile in, and advance it."""
        previous = self.runs.latest(journey.id, facts.profile_id)
        if not may_enter(journey, previous, trigger.occurred_at):
            return None
        number = previous.number + 1 if previous else 1
        run = enter(journey, facts.profile_id, number, trigger, self.steps)
        self._entries[journey.id] += 1
        self._versions[(journey.id, journey.version)] = (journey, False)
        await self._advance(journey, run, facts, now, paused=False)
        return run

    def may_enter(self, journey: Journey, profile_id: str, at: datetime) -> bool:
        """Whether the re-entry rule lets the profile in at `at`."""
        return may_enter(journey, self.runs.latest(journey.id, profile_id), at)

    def schedule(self, journey: Journey, profile_id: str, due_at: datetime) -> Run | None:
        """Enter a current member, the run held at the start until `due_at` (its turn), if the
        re-entry rule lets the profile in then."""
        if not self.may_enter(journey, profile_id, due_at):
            return None
        previous = self.runs.latest(journey.id, profile_id)
        number = previous.number + 1 if previous else 1
        run = enter(journey, profile_id, number, Trigger(None, due_at), self.steps)
        hold_until(run, due_at)
        self._entries[journey.id] += 1
        self.runs.save(run, journey)
        return run

    async def schedule_at_best_time(
        self,
        journey: Journey,
        profile_id: str,
        zone: str | None,
        best_time: BestTime,
        start: datetime,
        turn: Callable[[datetime], datetime],
    ) -> Run | None:
        """Enter a current member at `start`, held until their best hour: the send-time model
        picks it within the window from `start` (the decision logged, the send targeted unless
        it explored) and `turn` gives the due time from that instant (the throttle)."""
        run = self.schedule(journey, profile_id, start)
        if run is None:
            return None
        await self._load_counts(profile_id)
        chosen = choose_send_time(
            run, journey.start, best_time, zone, start, self.steps, self._learning
        )
        hold_until(run, turn(chosen))
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
        self._exits[run.journey_id, reason] += 1
        self.runs.save(run, found[0])

    async def fall_back(self, run: Run, facts: ProfileFacts, node_id: str, request: str) -> None:
        """The run's message from a send on several channels could not be delivered: ask for
        the next channel (not while the journey is paused: it sends nothing then)."""
        found = await self.version_of(run)
        if found is None or found[1]:
            return
        if fall_back(found[0], run, facts, node_id, request, self.steps):
            self.runs.save(run, found[0])

    async def reach_goal(self, run: Run, at: datetime) -> None:
        found = await self.version_of(run)
        if found is None:
            return
        reach_goal(found[0], run, at, self.steps)
        if run.exit_reason == "goal":
            self._exits[run.journey_id, "goal"] += 1
        self.runs.save(run, found[0])

    async def _advance(
        self, journey: Journey, run: Run, facts: ProfileFacts, now: datetime, *, paused: bool
    ) -> None:
        if journey.learns:
            await self._load_counts(run.profile_id)
        advance(
            journey,
            run,
            facts,
            now,
            self.steps,
            paused=paused,
            step_limit=self._step_limit,
            learning=self._learning,
        )
        if run.status == "exited" and run.exit_reason is not None:
            self._exits[run.journey_id, run.exit_reason] += 1
        self.runs.save(run, journey)

    async def _load_counts(self, profile_id: str) -> None:
        """The profile's engagement counts, loaded with those of every profile not yet loaded."""
        if profile_id in self._counts:
            return
        wanted = self._uncounted | {profile_id}
        self._uncounted.clear()
        await self.store.save_engagement(self._book.take_changes())
        loaded = people_counts(await self.store.engagement_of(wanted))
        self._counts.update({p: loaded.get(p) or PersonCounts() for p in wanted})

    def _forget_counts(self, profile_ids: set[str]) -> None:
        for profile_id in profile_ids:
            self._counts.pop(profile_id, None)
        self._uncounted -= profile_ids

    async def save_runs(self) -> None:
        """Write the runs changed so far, with the engagement counted, the decisions made and
        the requests timed (before a statement that reads or moves them)."""
        await self.store.save_runs(self.runs.take_changed())
        await self.store.save_engagement(self._book.take_changes())
        decisions, self.steps.decisions = self.steps.decisions, []
        await self.store.save_decisions(decisions)
        targeted, self._targeted = self._targeted, []
        await self.store.save_messages(targeted)

    async def save(self) -> None:
        """Write the changed runs, then add up the batch's counters (once, at the end: fewer
        rows locked, in key order), and count the batch in the metrics."""
        await self.save_runs()
        await self.store.add_counters(self.steps.counters)
        self.steps.counters.clear()
        self._count()

    def _count(self) -> None:
        for journey_id, count in self._entries.items():
            metrics.ENTRIES.labels(journey_id).inc(count)
        for (journey_id, reason), count in self._exits.items():
            metrics.EXITS.labels(journey_id, reason).inc(count)
        for (journey_id, channel), count in self._sends.items():
            metrics.SENDS.labels(journey_id, channel).inc(count)
        self._entries.clear()
        self._exits.clear()
        self._sends.clear()

    def _contact_of(self, run: Run) -> ContactRule | None:
        """The contact rule of the run's version (priority, on_conflict, transactional)."""
        version = self._versions.get((run.journey_id, run.version))
        return None if version is None else version[0].contact

    def take_events(self, now: datetime) -> list[Event[Any]]:
        """The events the steps taken since the last call emit, in the order taken."""
        sends, self.steps.sends = self.steps.sends, []
        updates, self.steps.updates = self.steps.updates, []
        events: list[Event[Any]] = []
        for run, send in sends:
            channel = send.option.channel
            self._sends[run.journey_id, channel] += 1
            if send.targeted:
                record = MessageRecord(send.request_id, run.profile_id, channel, targeted=True)
                self._targeted.append(record)
            events.append(
                Event(
                    data=MessageRequested(
                        request_id=send.request_id,
                        journey=_ref(run, send.node.id),
                        profile_id=run.profile_id,
                        channel=channel,
                        template_id=send.option.template_id,
                        variables=send.variables,
                        idempotency_key=send.idempotency_key,
                        triggered_by=run.trigger.event_id,
                        behavior_at=run.trigger.occurred_at,
                        profile=send.profile,
                        subscription_topic=send.node.topic,
                        contact=self._contact_of(run),
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
