"""The profile facts events carry: the changes a copy applies, and the snapshot a request takes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from libs.common.events import (
    BehaviorIdentifiedChunk,
    BehaviorOccurred,
    Event,
    ProfileMerged,
    ProfileSnapshot,
    ProfileUpdated,
)
from libs.common.profiles.facts import ProfileFacts


def carried_changes(data: BehaviorOccurred | ProfileUpdated) -> list[tuple[str, Any]]:
    """The (path, value after) changes an event carries for the profile's copy, in order."""
    changes = data.profile_changes if isinstance(data, BehaviorOccurred) else data.changes
    return [(change.field, change.after) for change in changes]


def behaviours_unchunked(events: Sequence[Event[Any]]) -> list[Event[Any]]:
    """The events with each `behavior.identified_chunk` replaced by its rows, in order, each
    a `behavior.occurred` of its own: a copy applies an import's rows as it applies calls.

    A row's event id is the chunk's and the row's place in it, the same on every delivery.
    """
    if not any(type(event.data) is BehaviorIdentifiedChunk for event in events):
        return list(events)
    unchunked: list[Event[Any]] = []
    for event in events:
        if type(event.data) is BehaviorIdentifiedChunk:
            unchunked.extend(
                Event(
                    row,
                    row.profile_id,
                    event.source,
                    f"{event.id}/{index}",
                    event.time,
                    event.traceparent,
                )
                for index, row in enumerate(event.data.rows)
            )
        else:
            unchunked.append(event)
    return unchunked


def profiles_named(events: Iterable[Any]) -> set[str]:
    """Every profile the events' data name: whose copies a batch must lock."""
    named: set[str] = set()
    for data in events:
        if isinstance(data, ProfileMerged):
            named.update([data.survivor_id, *data.merged_ids])
        elif isinstance(profile_id := getattr(data, "profile_id", None), str):
            named.add(profile_id)
    return named


def snapshot_of(facts: ProfileFacts) -> ProfileSnapshot:
    """The facts a message request carries (content renders them, dispatch sends by them), as
    they are now: copied, since a later change in the same batch changes the facts in place."""
    return ProfileSnapshot.model_construct(
        traits=dict(facts.traits),
        tags=list(facts.tags),
        lifecycle_stage=facts.lifecycle_stage,
        scores=dict(facts.scores),
        top_category=facts.top_category,
    )


def facts_of(profile_id: str, snapshot: ProfileSnapshot | None) -> ProfileFacts:
    """A request's profile facts as a ProfileFacts (empty when the request carried none)."""
    if snapshot is None:
        return ProfileFacts(profile_id)
    return ProfileFacts(
        profile_id,
        dict(snapshot.traits),
        list(snapshot.tags),
        snapshot.lifecycle_stage,
        dict(snapshot.scores),
        snapshot.top_category,
    )
