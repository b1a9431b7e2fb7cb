"""The journey handler: segment moves, behaviours, outcomes and profile changes move runs; the
segment moves are also kept as memberships, for entering a segment's current members."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from libs.common.bus import Batch, BatchHandler
from libs.common.events import (
    BehaviorIdentifiedChunk,
    BehaviorOccurred,
    Event,
    MessageClicked,
    MessageDeferred,
    MessageDelivered,
    MessageFailed,
    MessageOpened,
    MessageSent,
    MessageSuppressed,
    MessageUnsubscribed,
    ProfileDeleted,
    ProfileMerged,
    ProfileUpdated,
    SegmentEntered,
    SegmentExited,
)
from libs.common.profiles import (
    ProfileFacts,
    apply_changes,
    behaviours_unchunked,
    carried_changes,
    facts_of,
    merge_facts,
    profiles_named,
)
from services.journey.conditions import Context, holds
from services.journey.engine import (
    Trigger,
    entry_matches,
    reaches_goal,
    undeliverable,
    waits_for_event,
    waits_for_outcome,
)
from services.journey.learning import Policy
from services.journey.runner import Runner
from services.journey.store import Entries, JourneyStore, MembershipChange

# A deferral counts in its send node's stats (`outcomes.deferred`) and nowhere else: it says
# nothing of engagement or of the channel, and no wait_for waits for it.
OUTCOME_TYPES: tuple[type[Any], ...] = (
    MessageSent,
    MessageFailed,
    MessageSuppressed,
    MessageDeferred,
    MessageDelivered,
    MessageOpened,
    MessageClicked,
    MessageUnsubscribed,
)
ACCEPTED_TYPES = frozenset(
    {
        SegmentEntered.event_type,
        SegmentExited.event_type,
        BehaviorOccurred.event_type,
        BehaviorIdentifiedChunk.event_type,
        ProfileUpdated.event_type,
        ProfileMerged.event_type,
        ProfileDeleted.event_type,
        *(model.event_type for model in OUTCOME_TYPES),
    }
)


def journey_handler(schema: str, *, step_limit: int, policy: Policy) -> BatchHandler:
    """Lock the batch's profiles, load their runs, the journeys its events enter and the
    messages its outcomes name, take the events in order in memory, then write runs, profiles,
    engagement and counters in bulk."""

    async def handle(batch: Batch) -> None:
        # An import's rows are taken as the calls they were (their events the batch's own).
        batch.events = behaviours_unchunked(batch.events)
        store = JourneyStore(batch.session, schema)
        profiles = await store.lock_profiles(profiles_named(e.data for e in batch.events))
        runner = Runner(store, step_limit=step_limit, policy=policy)
        await runner.load_runs(profiles.keys(), _goals_since(batch))
        entries = await _entries_of(store, batch)
        await runner.load_messages(_messages_named(batch))
        now = datetime.now(UTC)
        memberships: list[MembershipChange] = []
        for event in batch.events:
            if isinstance(event.data, ProfileMerged | ProfileDeleted):
                # The database moves or erases the profile's memberships: it holds them first.
                await store.save_memberships(memberships)
                memberships.clear()
            await _take(runner, entries, profiles, memberships, event, now)
            for emitted in runner.take_events(now):
                batch.emit(emitted, cause=event)
        await store.save_memberships(memberships)
        await store.save_profiles(profiles.values())
        await runner.save()

    return handle


async def _take(
    runner: Runner,
    entries: Entries,
    profiles: dict[str, ProfileFacts],
    memberships: list[MembershipChange],
    event: Event[Any],
    now: datetime,
) -> None:
    data = event.data
    if isinstance(data, ProfileMerged):
        await _merge(runner, profiles, data)
        return
    facts = profiles.get(data.profile_id)
    if facts is None:  # erased or merged away earlier in this batch
        return
    if isinstance(data, ProfileDeleted):
        await runner.erase(data.profile_id)
        del profiles[data.profile_id]
    elif isinstance(data, SegmentEntered):
        memberships.append(MembershipChange(data.segment_id, data.profile_id, data.occurred_at))
        trigger = Trigger(event.id, data.occurred_at)
        for journey in entries.segment(data.segment_id):
            await runner.enter(journey, _facts_at_entry(facts, data), trigger, now)
    elif isinstance(data, SegmentExited):
        memberships.append(MembershipChange(data.segment_id, data.profile_id, None))
        await _left_segment(runner, facts, data)
    elif isinstance(data, BehaviorOccurred):
        # What the call changed about the profile first: the runs the behaviour moves, and the
        # journeys it enters, see the profile as the call left it.
        if data.profile_changes:
            await _profile_changed(runner, facts, data)
        await _behaved(runner, entries, facts, event, data, now)
    elif isinstance(data, ProfileUpdated):
        await _profile_changed(runner, facts, data)
    else:
        await _outcome(runner, facts, event, now)


def _facts_at_entry(facts: ProfileFacts, data: SegmentEntered) -> ProfileFacts:
    """The facts a segment entry enters journeys with: those segment held when the profile
    entered, when the event carries them, else journey's copy.

    The behaviour behind an entry reaches journey on another topic, with no order between the
    two: journey's copy may not have its changes yet. The entry's facts are the ones that made
    the profile a member, so the first steps decide and render with them. Journey's copy is
    left as it is; it takes the changes from their own events (the entry's facts may also be
    older than a change the copy already has).
    """
    if data.profile is None:
        return facts
    return facts_of(facts.profile_id, data.profile)


async def _profile_changed(
    runner: Runner, facts: ProfileFacts, data: BehaviorOccurred | ProfileUpdated
) -> None:
    apply_changes(facts, carried_changes(data))
    await _check_exit_conditions(runner, facts)


async def _left_segment(runner: Runner, facts: ProfileFacts, data: SegmentExited) -> None:
    for run in runner.runs.live(facts.profile_id):
        found = await runner.version_of(run)
        if found is None:
            continue
        journey = found[0]
        if journey.exit.on_segment_exit and journey.entry.segment == data.segment_id:
            await runner.exit(run, "segment_exited")


async def _behaved(
    runner: Runner,
    entries: Entries,
    facts: ProfileFacts,
    event: Event[Any],
    data: BehaviorOccurred,
    now: datetime,
) -> None:
    """A behaviour answers wait_for nodes first, then counts for goals, then may enter."""
    properties = dict(data.properties)
    trigger = Trigger(event.id, data.occurred_at, data.event, properties)
    for run in runner.runs.live(facts.profile_id):
        found = await runner.version_of(run)
        if found is not None and waits_for_event(found[0], run, data.event, properties):
            await runner.move_on(run, facts, now, outcome="matched", trigger=trigger)
    for run in runner.runs.in_goal_window(facts.profile_id, data.occurred_at):
        found = await runner.version_of(run)
        if found is not None and reaches_goal(found[0], run, data.event, properties):
            await runner.reach_goal(run, data.occurred_at)
    for journey in entries.event(data.event):
        if entry_matches(journey, data.event, properties):
            await runner.enter(journey, facts, trigger, now)


async def _outcome(runner: Runner, facts: ProfileFacts, event: Event[Any], now: datetime) -> None:
    """An outcome counts as engagement evidence and in its send node's stats; an undeliverable
    message then asks for the next channel of its send (it is then no longer the node's
    message, so a wait_for on its outcome waits for the next channel's); then the outcome
    answers wait_for nodes."""
    data = event.data
    outcome = event.type.partition(".")[2]
    runner.count_engagement(facts, outcome, data.request_id, data.channel, data.occurred_at)
    ref = data.journey
    runner.steps.count_outcome(ref.journey_id, ref.journey_version, ref.node_id, outcome)
    reason = data.reason if isinstance(data, MessageSuppressed) else None
    retryable = data.retryable if isinstance(data, MessageFailed) else None
    if undeliverable(outcome, reason=reason, retryable=retryable):
        for run in runner.runs.of_journey(facts.profile_id, ref.journey_id, ref.journey_version):
            await runner.fall_back(run, facts, ref.node_id, data.request_id)
    for run in runner.runs.live(facts.profile_id):
        if (run.journey_id, run.version) != (ref.journey_id, ref.journey_version):
            continue
        found = await runner.version_of(run)
        if found is not None and waits_for_outcome(
            found[0], run, outcome, ref.node_id, data.request_id
        ):
            # An outcome is not a behaviour: the run keeps the behaviour it had for templates.
            trigger = Trigger(event.id, data.occurred_at, run.trigger.event, run.trigger.properties)
            await runner.move_on(run, facts, now, outcome="matched", trigger=trigger)


async def _check_exit_conditions(runner: Runner, facts: ProfileFacts) -> None:
    for run in runner.runs.live(facts.profile_id):
        found = await runner.version_of(run)
        condition = found[0].exit.condition if found is not None else None
        if condition is not None and holds(condition, Context(facts, run.trigger.properties)):
            await runner.exit(run, "exit_condition")


async def _merge(runner: Runner, profiles: dict[str, ProfileFacts], data: ProfileMerged) -> None:
    survivor = profiles.get(data.survivor_id)
    if survivor is None:
        return
    merged = [
        profiles.pop(p) for p in data.merged_ids if p in profiles and p != survivor.profile_id
    ]
    merge_facts(survivor, merged)
    if merged:
        await runner.move_runs(survivor.profile_id, [other.profile_id for other in merged])


def _messages_named(batch: Batch) -> set[str]:
    """The requests of the batch's sends and engagements: their records say what was counted."""
    counted = (MessageSent, MessageOpened, MessageClicked)
    return {event.data.request_id for event in batch.events if isinstance(event.data, counted)}


def _goals_since(batch: Batch) -> datetime | None:
    """The earliest behaviour's event time: goals that ended before it cannot count."""
    times = [event.data.occurred_at for event in batch.of_type(BehaviorOccurred)]
    return min(times) if times else None


async def _entries_of(store: JourneyStore, batch: Batch) -> Entries:
    segments = {event.data.segment_id for event in batch.of_type(SegmentEntered)}
    behaviours = {event.data.event for event in batch.of_type(BehaviorOccurred)}
    return await store.journeys_entered_on(segments=segments, events=behaviours)
