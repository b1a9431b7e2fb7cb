"""The content handler: count the bandit's evidence, answer each `message.requested` with a
`message.rendered` (or a recorded decision to send nothing), and let content's decisions follow
profiles' merges and erasures.

Content keeps no copy of profiles: a request carries the facts it is rendered with (its
`profile`), so content does not accept `profile.updated` (its consumer skips it unread). A
request made before requests carried them is rendered with an empty profile (rendering.py).

A batch at a time: its evidence is counted in a few statements, each outcome in the context its
variant was chosen in; its requests are answered together (rendering.py); then its merges and
erasures move or erase the decisions, the batch's own included, in one statement each.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
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
)
from services.content import metrics
from services.content.experiments import Outcome, rewards_of
from services.content.profiles import decision_moves
from services.content.rendering import RequestRenderer
from services.content.store import BatchStore, Connection

SOURCE = "closeloop/content"
ACCEPTED_TYPES = frozenset(
    {
        MessageRequested.event_type,
        MessageSent.event_type,
        MessageClicked.event_type,
        ConversionAttributed.event_type,
        ProfileMerged.event_type,
        ProfileDeleted.event_type,
    }
)
ProfileEvent = ProfileMerged | ProfileDeleted
_PROFILE_EVENTS = (ProfileMerged, ProfileDeleted)
_OUTCOMES = (MessageSent, MessageClicked, ConversionAttributed)


def content_handler(
    schema: str,
    renderer: RequestRenderer,
    *,
    half_life_days: float = 30.0,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> BatchHandler:
    """`half_life_days`: how fast the bandit's evidence loses weight."""
    store = BatchStore(schema)

    async def handle(batch: Batch) -> None:
        profile_events, outcomes, requests = _split(batch.events)
        connection = await store.connection(batch.session)
        now = clock()
        if outcomes:
            await _count_evidence(store, connection, outcomes, now, half_life_days)
        if requests:
            messages = await renderer.answer_all(
                store, connection, [event.data for event in requests], now=now
            )
            for cause, message in zip(requests, messages, strict=True):
                if message is not None:
                    event = Event(data=message, key=message.profile_id, source=SOURCE)
                    batch.emit(event, cause=cause)
        # After the requests: the decisions this batch recorded follow its merges and erasures.
        if profile_events:
            moved, erased = decision_moves(profile_events)
            await store.move_decisions(connection, moved, erased)

    return handle


def _split(
    events: Sequence[Event[Any]],
) -> tuple[list[ProfileEvent], list[Outcome], list[Event[MessageRequested]]]:
    """The batch's merges and erasures, outcomes and conversions, and requests, each in order."""
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
