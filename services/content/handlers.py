"""The content handler: keep the profile read model, count the bandit's evidence, and answer
each `message.requested` with a `message.rendered` (or a recorded decision to send nothing, or
to wait for the profile's address: a later batch that brings it answers the request).

A batch at a time: its profiles are loaded and locked in one query, changed in event order in
memory and written back in bulk; its evidence is counted in a few statements, each outcome in
the context its variant was chosen in; its requests are answered together (rendering.py).
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
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
from services.content.experiments import Outcome, rewards_of
from services.content.profiles import ProfileBook
from services.content.rendering import RequestRenderer
from services.content.store import BatchStore, Connection
from services.content.waiting import PendingRequest, addressed_channels, newly_addressed

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
_PROFILE_EVENTS = (ProfileUpdated, ProfileMerged, ProfileDeleted)
_OUTCOMES = (MessageSent, MessageClicked, ConversionAttributed)


def content_handler(
    schema: str,
    renderer: RequestRenderer,
    *,
    address_wait_seconds: float = 600.0,
    half_life_days: float = 30.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BatchHandler:
    """`address_wait_seconds`: how long a request waits for its profile's address;
    `half_life_days`: how fast the bandit's evidence loses weight."""
    store = BatchStore(schema)
    # Expired waiting requests are cleared now and then, by a batch, not by a timer.
    cleanup_every = timedelta(seconds=min(address_wait_seconds, 60.0))
    last_cleanup: list[datetime] = []

    async def handle(batch: Batch) -> None:
        profile_events, outcomes, requests = _split(batch.events)
        connection = await store.connection(batch.session)
        now = clock()
        waited: list[PendingRequest] = []
        # The read model and the evidence first: the topics are not ordered with each other, so
        # a request and the profile change just before it can arrive in one batch either way.
        if profile_events:
            waited = await _follow_profiles(store, connection, profile_events)
        if outcomes:
            await _count_evidence(store, connection, outcomes, now, half_life_days)
        if not last_cleanup or now - last_cleanup[0] >= cleanup_every:
            last_cleanup[:] = [now]
            cutoff = now - timedelta(seconds=address_wait_seconds)
            for channel, count in collections.Counter(
                await store.expire_waiting(connection, cutoff)
            ).items():
                metrics.RENDERS.labels(channel, "undeliverable").inc(count)
        if not requests and not waited:
            return
        fresh = [
            PendingRequest(event.data, event.data.profile_id, event.id, event.traceparent, now)
            for event in requests
        ]
        messages = await renderer.answer_all(
            store, connection, fresh, waited, now=now, wait_seconds=address_wait_seconds
        )
        causes = [_original(pending) for pending in waited] + list(requests)
        for cause, message in zip(causes, messages, strict=True):
            if message is not None:
                batch.emit(Event(data=message, key=message.profile_id, source=SOURCE), cause=cause)

    return handle


def _original(pending: PendingRequest) -> Event[MessageRequested]:
    """The request event a waiting request came in, as the cause of its late answer."""
    return Event(
        data=pending.request,
        key=pending.request.profile_id,
        source=SOURCE,
        id=pending.cause_id,
        time=pending.arrived_at,
        traceparent=pending.traceparent,
    )


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
) -> list[PendingRequest]:
    """Apply the changes, merges and erasures to the read model, in order: the requests that
    waited for an address the batch gave, taken from the waiting list."""
    created: set[str] = set()  # what a change or a merge names gets a row, to lock it
    erased: set[str] = set()
    for data in events:
        if isinstance(data, ProfileUpdated):
            created.add(data.profile_id)
        elif isinstance(data, ProfileMerged):
            created.update((data.survivor_id, *data.merged_ids))
        else:
            erased.add(data.profile_id)
    stored, new = await store.lock_profiles(connection, created, created | erased)
    before = {
        profile_id: addressed_channels(facts)
        for profile_id, facts in stored.items()
        if profile_id not in new  # content had not heard of it: no channel before
    }
    book = ProfileBook(dict(stored))
    for data in events:
        if isinstance(data, ProfileUpdated):
            book.update(data.profile_id, ((c.field, c.after) for c in data.changes))
        elif isinstance(data, ProfileMerged):
            book.merge(data.survivor_id, data.merged_ids)
        else:
            book.erase(data.profile_id)
    await store.save_profiles(connection, book.changed(), book.erased())
    moved, gone = book.moved_decisions(), book.erased_decisions()
    addressed = newly_addressed(before, book.saved(), book.survivors)
    # Before the waiting list changes: a request parked meanwhile is seen (lock_addresses).
    await store.lock_addresses(
        connection, {*moved, *gone, *(profile_id for profile_id, _ in addressed)}
    )
    await store.move_decisions(connection, moved, gone)
    return await store.claim_waiting(connection, addressed)


async def _count_evidence(
    store: BatchStore,
    connection: Connection,
    outcomes: Sequence[Outcome],
    now: datetime,
    half_life_days: float,
) -> None:
    """A send is a trial, its first click a success; a conversion adds its credit share. Each
    counts in the context its request's variant was chosen in."""
    logged = await store.logged_contexts(
        connection, {o.request_id for o in outcomes if not isinstance(o, ConversionAttributed)}
    )
    sent = await store.sent_contexts(
        connection, {o.message_id for o in outcomes if isinstance(o, ConversionAttributed)}
    )
    counted = await store.count_rewards(
        connection, rewards_of(outcomes, logged, sent), now=now, half_life_days=half_life_days
    )
    for kind, count in collections.Counter(r.kind.split(":")[0] for r in counted).items():
        metrics.BANDIT_UPDATES.labels(kind).inc(count)
