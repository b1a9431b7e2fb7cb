"""Deciding who enters and leaves which segment, recording it, and the events that say so."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from libs.common.events import Event, ProfileSnapshot, SegmentEntered, SegmentExited
from libs.common.events.segment import MembershipReason
from services.segment.rules import ProfileFacts, SegmentRule, Transition, event_names, reevaluate
from services.segment.store import BulkChanges, SegmentStore

SOURCE = "closeloop/segment"
# Segments built on segments are re-evaluated round by round; a cycle of `in_segment`
# references must still end.
_MAX_ROUNDS = 8


async def reevaluate_and_record(
    store: SegmentStore,
    profiles: Mapping[str, ProfileFacts],
    touched: Mapping[str, set[str]],
    now: datetime,
) -> list[Transition]:
    """Re-evaluate the segments the touched keys can affect; record memberships and timers.

    `profiles` holds the touched profiles' current facts, locked by the caller.
    """
    await store.load_memberships(profiles)
    loaded_events: set[str] = set()
    transitions: list[Transition] = []
    timers: dict[tuple[str, str], datetime | None] = {}
    pending = {profile: keys for profile, keys in touched.items() if profile in profiles}
    for _ in range(_MAX_ROUNDS):
        if not pending:
            break
        rules = await store.rules_touched_by(set().union(*pending.values()))
        await _load_missing_behaviours(store, profiles, rules, loaded_events)
        evaluation = reevaluate(rules, profiles, pending, now)
        transitions += evaluation.transitions
        timers.update(evaluation.timers)
        pending = evaluation.touched()
    await store.record_transitions(transitions, now)
    await store.set_timers(timers)
    return transitions


async def _load_missing_behaviours(
    store: SegmentStore,
    profiles: Mapping[str, ProfileFacts],
    rules: Sequence[SegmentRule],
    loaded: set[str],
) -> None:
    needed = set().union(*(event_names(rule.condition) for rule in rules)) - loaded
    if needed:
        await store.load_behaviours(profiles, needed)
        loaded |= needed


def membership_event(
    transition: Transition,
    *,
    occurred_at: datetime,
    reason: MembershipReason,
    caused_by: str | None = None,
    facts: ProfileSnapshot | None = None,
) -> Event[Any]:
    """`segment.entered` (with the facts the profile entered with) or `segment.exited` for a
    transition."""
    fields: dict[str, Any] = {
        "segment_id": transition.segment_id,
        "segment_version": transition.version,
        "profile_id": transition.profile_id,
        "occurred_at": occurred_at,
        "reason": reason,
        "caused_by": caused_by,
    }
    data = (
        SegmentEntered(**fields, profile=facts) if transition.entered else SegmentExited(**fields)
    )
    return Event(data=data, key=transition.profile_id, source=SOURCE)


async def evaluate_in_bulk(
    store: SegmentStore, rule: SegmentRule, now: datetime
) -> tuple[BulkChanges, list[Event[Any]]]:
    """Make a new or changed segment's memberships match its rules over every profile."""
    changes = await store.evaluate_in_bulk(rule, now)
    events = [
        membership_event(
            Transition(rule.segment_id, rule.version, profile_id, entered),
            occurred_at=now,
            reason="bulk",
        )
        for entered, profile_ids in ((True, changes.entered), (False, changes.exited))
        for profile_id in profile_ids
    ]
    return changes, events
