"""The content handler: keep the profile read model, count the bandit's evidence, and answer
each `message.requested` with a `message.rendered` (or a recorded decision to send nothing).

A batch at a time: its profiles are loaded and locked in one query, changed in event order in
memory and written back in bulk; its evidence is counted in two statements; its requests are
answered together (rendering.py).
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from typing import Any

from libs.common.bus import Batch, BatchHandler
from libs.common.events import (
    ConversionAttributed,
    Event,
    MessageClicked,
    MessageRequested,
    MessageSent,
    ProfileDeleted,
    ProfileMerged,
    ProfileUpdated,
)
from services.content import metrics
from services.content.profiles import ProfileBook
from services.content.rendering import RequestRenderer
from services.content.store import BatchStore, Connection, RewardRow

SOURCE = "closeloop/content"
ACCEPTED_TYPES = frozenset(
    {
        MessageRequested.event_type,
        MessageSent.event_type,
        MessageClicked.event_type,
        ConversionAttributed.event_type,
        ProfileUpdated.event_type,
        ProfileMerged.event_type,
        ProfileDeleted.event_type,
    }
)
ProfileEvent = ProfileUpdated | ProfileMerged | ProfileDeleted
Outcome = MessageSent | MessageClicked | ConversionAttributed
_PROFILE_EVENTS = (ProfileUpdated, ProfileMerged, ProfileDeleted)
_OUTCOMES = (MessageSent, MessageClicked, ConversionAttributed)


def content_handler(schema: str, renderer: RequestRenderer) -> BatchHandler:
    store = BatchStore(schema)

    async def handle(batch: Batch) -> None:
        profile_events, outcomes, requests = _split(batch.events)
        connection = await store.connection(batch.session)
        # The read model and the evidence first: the topics are not ordered with each other, so
        # a request and the profile change just before it can arrive in one batch either way.
        if profile_events:
            await _follow_profiles(store, connection, profile_events)
        if outcomes:
            await _count_evidence(store, connection, outcomes)
        if not requests:
            return
        messages = await renderer.answer_all(store, connection, [r.data for r in requests])
        for event, message in zip(requests, messages, strict=True):
            if message is not None:
                batch.emit(
                    Event(data=message, key=event.data.profile_id, source=SOURCE), cause=event
                )

    return handle


def _split(
    events: Sequence[Event[Any]],
) -> tuple[list[ProfileEvent], list[Outcome], list[Event[MessageRequested]]]:
    """The batch's profile changes, outcomes and conversions, and requests, each in order."""
    profile_events: list[ProfileEvent] = []
    outcomes: list[Outcome] = []
    requests: list[Event[MessageRequested]] = []
    for event in events:
        data = event.data
        if isinstance(data, MessageRequested):
            requests.append(event)
        elif isinstance(data, _PROFILE_EVENTS):
            profile_events.append(data)
        elif isinstance(data, _OUTCOMES):
            outcomes.append(data)
    return profile_events, outcomes, requests


async def _follow_profiles(
    store: BatchStore, connection: Connection, events: Sequence[ProfileEvent]
) -> None:
    """Apply the changes, merges and erasures to the read model, in order."""
    created: set[str] = set()  # what a change or a merge names gets a row, to lock it
    erased: set[str] = set()
    for data in events:
        if isinstance(data, ProfileUpdated):
            created.add(data.profile_id)
        elif isinstance(data, ProfileMerged):
            created.update((data.survivor_id, *data.merged_ids))
        else:
            erased.add(data.profile_id)
    stored = await store.lock_profiles(connection, created, created | erased)
    book = ProfileBook(dict(stored))
    for data in events:
        if isinstance(data, ProfileUpdated):
            book.update(data.profile_id, ((c.field, c.after) for c in data.changes))
        elif isinstance(data, ProfileMerged):
            book.merge(data.survivor_id, data.merged_ids)
        else:
            book.erase(data.profile_id)
    await store.save_profiles(connection, book.saved(), book.erased())
    await store.move_decisions(connection, book.moved_decisions(), book.erased_decisions())


async def _count_evidence(
    store: BatchStore, connection: Connection, outcomes: Sequence[Outcome]
) -> None:
    """A send is a trial, its first click a success; a conversion adds its credit share."""
    rewards: dict[tuple[str, str], RewardRow] = {}
    for data in outcomes:
        if data.template_id is None or data.variant_id is None:
            continue
        if isinstance(data, ConversionAttributed):
            kind, amount = f"conversion:{data.conversion_id}", data.credit_share
        else:
            kind, amount = ("trial" if isinstance(data, MessageSent) else "click"), 1.0
        reward = RewardRow(data.message_id, kind, data.template_id, data.variant_id, amount)
        rewards.setdefault((reward.message_id, reward.kind), reward)  # the first one counts
    counted = await store.count_rewards(connection, list(rewards.values()))
    for kind, count in collections.Counter(r.kind.split(":")[0] for r in counted).items():
        metrics.BANDIT_UPDATES.labels(kind).inc(count)
