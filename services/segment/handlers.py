"""The segment handler: copy behaviours and profile changes, re-evaluate what they can affect."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from libs.common.bus import Batch, BatchHandler
from libs.common.events import (
    BehaviorIdentifiedChunk,
    BehaviorOccurred,
    Event,
    ProfileDeleted,
    ProfileMerged,
    ProfileUpdated,
)
from libs.common.profiles import (
    apply_changes,
    behaviours_unchunked,
    carried_changes,
    merge_facts,
    profiles_named,
    snapshot_of,
)
from services.segment.membership import membership_event, reevaluate_and_record
from services.segment.rules import EVERYTHING, ProfileFacts
from services.segment.store import SegmentStore

ACCEPTED_TYPES = frozenset(
    {
        BehaviorOccurred.event_type,
        BehaviorIdentifiedChunk.event_type,
        ProfileUpdated.event_type,
        ProfileMerged.event_type,
        ProfileDeleted.event_type,
    }
)


def segment_handler(schema: str) -> BatchHandler:
    async def handle(batch: Batch) -> None:
        events = behaviours_unchunked(batch.events)
        store = SegmentStore(batch.session, schema)
        await store.hold_evaluation_lock(exclusive=False)
        profiles = await store.lock_profiles(profiles_named(e.data for e in events))
        changes = _BatchChanges(profiles)
        for event in events:
            changes.take(event)
        await store.record_behaviours(changes.behaviours)
        for survivor, merged in changes.merges:
            await store.move_profiles(survivor, merged)
        if changes.erased:
            await store.erase_profiles(sorted(changes.erased))
        await store.save_profiles(profiles.values())
        transitions = await reevaluate_and_record(
            store, profiles, changes.touched, datetime.now(UTC)
        )
        for transition in transitions:
            cause = changes.causes[transition.profile_id]
            occurred_at: datetime = cause.data.occurred_at
            facts = snapshot_of(profiles[transition.profile_id]) if transition.entered else None
            batch.emit(
                membership_event(
                    transition,
                    occurred_at=occurred_at,
                    reason="realtime",
                    caused_by=cause.id,
                    facts=facts,
                ),
                cause=cause,
            )

    return handle


class _BatchChanges:
    """What a batch changes, applied to the locked profiles' facts in the batch's order."""

    def __init__(self, profiles: dict[str, ProfileFacts]) -> None:
        self.profiles = profiles
        self.touched: dict[str, set[str]] = {}
        self.causes: dict[str, Event[Any]] = {}
        self.behaviours: list[tuple[str, str, datetime, Any]] = []
        self.merges: list[tuple[str, list[str]]] = []
        self.erased: set[str] = set()

    def take(self, event: Event[Any]) -> None:
        data = event.data
        if isinstance(data, BehaviorOccurred):
            # What the call changed about the profile comes first: the rules that read the
            # behaviour see the profile as the call left it.
            self._change(data, event)
            self.behaviours.append((data.profile_id, data.event, data.occurred_at, data.properties))
            self._touch(data.profile_id, {f"event:{data.event}"}, event)
        elif isinstance(data, ProfileUpdated):
            self._change(data, event)
        elif isinstance(data, ProfileMerged):
            self._merge(data, event)
        elif isinstance(data, ProfileDeleted):
            self._forget(data.profile_id)
            self.erased.add(data.profile_id)

    def _change(self, data: BehaviorOccurred | ProfileUpdated, event: Event[Any]) -> None:
        """Apply the profile changes the event carries to the copy, touching what they touch."""
        facts = self.profiles.get(data.profile_id)
        if facts is None:  # erased or merged away earlier in this batch
            return
        self._touch(data.profile_id, apply_changes(facts, carried_changes(data)), event)

    def _touch(self, profile_id: str, keys: set[str], cause: Event[Any]) -> None:
        if keys:
            self.touched.setdefault(profile_id, set()).update(keys)
            self.causes[profile_id] = cause

    def _merge(self, data: ProfileMerged, event: Event[Any]) -> None:
        survivor = self.profiles.get(data.survivor_id)
        if survivor is None:
            return
        merged = [p for profile_id in data.merged_ids if (p := self.profiles.get(profile_id))]
        merge_facts(survivor, merged)
        for profile_id in data.merged_ids:
            self._forget(profile_id)
        self.merges.append((data.survivor_id, list(data.merged_ids)))
        # The survivor now has another history and other memberships: any segment may change.
        self._touch(data.survivor_id, {EVERYTHING}, event)

    def _forget(self, profile_id: str) -> None:
        self.profiles.pop(profile_id, None)
        self.touched.pop(profile_id, None)
        self.causes.pop(profile_id, None)
