"""Event handlers: ingest calls resolved to profiles, their state updated, behaviour emitted.

What a client's call changes about a profile travels with the call's `behavior.occurred`
(`profile_changes`), not in a `profile.updated` of its own: per batch, a profile's changes ride
on the behaviour of its last call when that call is the last thing that touched it. When
something else came last (an outcome, a credit, a journey's change request, or an alias, which
has no behaviour), the profile's changes go out as one `profile.updated` caused by it, as they
do for lifecycle reviews (review.py) and re-scores after a fit (fits.py). Segment memberships
are recorded for `GET /profiles/{id}` but change nothing downstream hears of: segment.v1 says
them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from aiokafka.errors import KafkaError

from libs.common import topics
from libs.common.bus import Batch, BatchHandler, DependencyUnavailable
from libs.common.bus.chunks import PartitionChunks
from libs.common.bus.consumer import consumer_group
from libs.common.bus.inbox import claim_new_events
from libs.common.events import (
    BehaviorIdentifiedChunk,
    BehaviorOccurred,
    ConversionAttributed,
    Event,
    EventData,
    IngestAlias,
    IngestGroup,
    IngestIdentify,
    IngestIdentifyChunk,
    IngestPage,
    IngestScreen,
    IngestTrack,
    MessageClicked,
    MessageDelivered,
    MessageFailed,
    MessageOpened,
    MessageSent,
    MessageSuppressed,
    MessageUnsubscribed,
    ProfileChange,
    ProfileChangeRequested,
    ProfileMerged,
    ProfileUpdated,
    SegmentEntered,
    SegmentExited,
)
from libs.common.events.behavior import BehaviorKind
from libs.common.events.envelope import event_value, new_event_id
from services.profile import features
from services.profile.features import FeatureRules
from services.profile.identity import (
    CallIdentity,
    Identifier,
    IdentityGraph,
    IngestCall,
    Resolution,
    call_identity,
)
from services.profile.scoring import ScoreModel, predict
from services.profile.settings import ProfileSettings
from services.profile.state import Change, Observation, ProfileState, changes
from services.profile.store import Connection, HistoryRow, ProfileStore

SOURCE = "closeloop/profile"
_log = logging.getLogger(__name__)
INGEST_CALLS = (IngestTrack, IngestIdentify, IngestPage, IngestScreen, IngestGroup, IngestAlias)
# What happens to a profile already known by its id: what became of messages, conversion
# credits and journeys' change requests (and segment memberships, recorded apart).
MessageOutcome = (
    MessageSent
    | MessageFailed
    | MessageSuppressed
    | MessageDelivered
    | MessageOpened
    | MessageClicked
    | MessageUnsubscribed
)
KnownProfileEvent = MessageOutcome | ConversionAttributed | ProfileChangeRequested
Membership = SegmentEntered | SegmentExited
_OUTCOME_NAMES: dict[type[EventData], str] = {
    MessageSent: "sent",
    MessageFailed: "failed",
    MessageSuppressed: "suppressed",
    MessageDelivered: "delivered",
    MessageOpened: "opened",
    MessageClicked: "clicked",
    MessageUnsubscribed: "unsubscribed",
}
KNOWN_PROFILE_EVENTS: tuple[type[EventData], ...] = (
    ConversionAttributed,
    ProfileChangeRequested,
    *_OUTCOME_NAMES,
)
ACCEPTED_TYPES = (
    frozenset(model.event_type for model in INGEST_CALLS)
    | frozenset(model.event_type for model in KNOWN_PROFILE_EVENTS)
    | {SegmentEntered.event_type, SegmentExited.event_type, IngestIdentifyChunk.event_type}
)
# How many partitions a topic has (the producer's metadata): where behaviour chunks go.
PartitionCount = Callable[[str], Awaitable[int]]


def profile_handler(settings: ProfileSettings, partition_count: PartitionCount) -> BatchHandler:
    """Resolve each call to its profile, update the profile, and say so downstream."""
    store = ProfileStore(settings.schema_name)
    rules = FeatureRules.from_settings(settings)
    external_kinds = tuple(settings.profile_external_id_kinds)
    history = settings.profile_event_history
    churn_horizon_days = settings.profile_churn_horizon_days
    group = consumer_group(settings)
    chunk_rows = settings.profile_behaviour_chunk_rows
    chunk_bytes = settings.profile_behaviour_chunk_bytes

    async def handle(batch: Batch) -> None:
        events, chunked = await _rows_claimed(batch, store.schema, group)
        calls, known, memberships = _split(events)
        if not calls and not known and not memberships:
            return
        connection = await store.connection(batch.session)
        if calls or known:
            await _take_calls_and_known(connection, batch, calls, known, chunked)
        # After the profiles' states are saved, on what they saved, merges and erasures
        # included: a membership changes nothing downstream hears of, so no state is read.
        await store.record_memberships(connection, memberships_at_end(memberships))

    async def _take_calls_and_known(
        connection: Connection,
        batch: Batch,
        calls: list[Event[IngestCall]],
        known: list[Event[KnownProfileEvent]],
        chunked: set[int],
    ) -> None:
        work = await _ProfileWork.load(store, connection, calls, known, external_kinds, rules)
        for call, identity in zip(calls, work.identities, strict=True):
            work.apply(call, identity, batch)
        work.apply_to_known_profiles(known)
        if work.purchased:
            # Read after the profiles were locked: a re-score after a new fit waits for this
            # batch, or this batch sees the new fit (fits.py).
            work.score_purchases(await store.score_model(connection), churn_horizon_days)
        chunks = None
        if chunked:
            partitions = await _behaviour_partitions(partition_count)
            chunks = _BehaviourChunks(chunked, PartitionChunks(partitions, chunk_rows, chunk_bytes))
        work.emit_updates(batch, chunks)
        await work.save(store, connection, history)

    return handle


async def _behaviour_partitions(partition_count: PartitionCount) -> int:
    """behavior.v1's partition count; a broker that cannot say is an outage, retried, never a
    reason to dead-letter the chunks."""
    try:
        return await partition_count(topics.BEHAVIOR)
    except (KafkaError, TimeoutError, RuntimeError) as error:
        raise DependencyUnavailable(
            f"the broker did not say behavior.v1's partitions: {error!r}"
        ) from error


async def _rows_claimed(batch: Batch, schema: str, group: str) -> tuple[list[Event[Any]], set[int]]:
    """The batch's events with each import chunk replaced by its rows, as calls of their own,
    those seen before left out; and which of the events came from chunks (by `id`).

    Each row is claimed in the inbox by its messageId, as the call would have been alone: a
    chunk delivered again, or a row imported again in another chunk (or alone), is a known
    duplicate.
    """
    if not any(type(event.data) is IngestIdentifyChunk for event in batch.events):
        return batch.events, set()
    events: list[Event[Any]] = []
    rows: list[Event[Any]] = []
    for event in batch.events:
        if type(event.data) is IngestIdentifyChunk:
            unpacked = [_row_call(row, event) for row in event.data.rows]
            rows.extend(unpacked)
            events.extend(unpacked)
        else:
            events.append(event)
    unpacked_ids = {id(row) for row in rows}
    fresh = {id(row) for row in await claim_new_events(batch.session, schema, group, rows)}
    kept = [event for event in events if id(event) not in unpacked_ids or id(event) in fresh]
    return kept, fresh


def _row_call(row: IngestIdentify, chunk: Event[IngestIdentifyChunk]) -> Event[IngestIdentify]:
    return Event(
        row,
        row.user_id or row.anonymous_id or "",
        chunk.source,
        row.message_id,
        chunk.time,
        chunk.traceparent,
    )


_CALL_TYPES = frozenset(INGEST_CALLS)
_MEMBERSHIP_TYPES: frozenset[type[EventData]] = frozenset({SegmentEntered, SegmentExited})
_KNOWN_PROFILE_TYPES = frozenset(KNOWN_PROFILE_EVENTS)


def _split(
    events: Sequence[Event[Any]],
) -> tuple[list[Event[IngestCall]], list[Event[KnownProfileEvent]], list[Event[Membership]]]:
    """The batch's ingest calls, segment memberships and other events about known profiles,
    each in order."""
    calls: list[Event[IngestCall]] = []
    known: list[Event[KnownProfileEvent]] = []
    memberships: list[Event[Membership]] = []
    for event in events:
        data_type = type(event.data)  # exact types first: isinstance on models is slow
        if data_type in _CALL_TYPES or isinstance(event.data, INGEST_CALLS):
            calls.append(event)
        elif data_type in _MEMBERSHIP_TYPES:
            memberships.append(event)
        elif data_type in _KNOWN_PROFILE_TYPES or isinstance(event.data, KNOWN_PROFILE_EVENTS):
            known.append(event)
    return calls, known, memberships


def memberships_at_end(events: Sequence[Event[Membership]]) -> dict[tuple[str, str], int | None]:
    """(profile id, segment id) -> the segment's version the profile is in after the events,
    or None when it left."""
    return {
        (event.data.profile_id, event.data.segment_id): (
            event.data.segment_version if type(event.data) is SegmentEntered else None
        )
        for event in events
    }


@dataclass
class _ProfileWork:
    """One batch's profiles in memory: loaded in one query, changed in order, saved in bulk."""

    graph: IdentityGraph
    profiles: dict[str, ProfileState]
    identities: list[CallIdentity]
    rules: FeatureRules
    # Identifiers nobody owned, held by this transaction until it links them.
    claimed: set[Identifier] = field(default_factory=set)
    # Each profile id named by a known-profile event -> the living profile it is now.
    current: dict[str, str] = field(default_factory=dict)
    as_of: float = field(default_factory=time.time)
    now: datetime = field(init=False)  # as_of as a datetime: the time of the batch's events
    before: dict[str, dict[str, Any]] = field(default_factory=dict)
    # What last changed each profile: the call or event its changes are attributed to.
    last_cause: dict[str, Event[Any]] = field(default_factory=dict)
    # The calls' behaviours, as (profile id, call) in order: emitted by `emit_updates`, once
    # each profile's changes are known, so that they carry them.
    behaviours: list[tuple[str, Event[IngestCall]]] = field(default_factory=list)
    history: list[HistoryRow] = field(default_factory=list)
    # Profiles whose purchases changed (merged ones followed to their survivor when scored).
    purchased: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.now = datetime.fromtimestamp(self.as_of, UTC)

    @classmethod
    async def load(
        cls,
        store: ProfileStore,
        connection: Connection,
        calls: Sequence[Event[IngestCall]],
        known: Sequence[Event[KnownProfileEvent]],
        external_kinds: Sequence[str],
        rules: FeatureRules,
    ) -> _ProfileWork:
        """The batch's people, locked for its transaction (see `ProfileStore.lock`)."""
        identities = [call_identity(call.data, external_kinds) for call in calls]
        wanted = {identifier for identity in identities for identifier in identity.lookup}
        locked = await store.lock(connection, wanted, {event.data.profile_id for event in known})
        stored = locked.profiles
        return cls(
            graph=IdentityGraph(
                links={i: profile.id for profile in stored for i in profile.identifiers},
                created_at={profile.id: profile.created_at for profile in stored},
            ),
            profiles={profile.id: profile.state for profile in stored},
            identities=identities,
            rules=rules,
            claimed=locked.claimed,
            current=locked.current,
        )

    def apply(self, call: Event[IngestCall], identity: CallIdentity, batch: Batch) -> None:
        data = call.data
        at = data.timestamp.timestamp()
        resolution = self.graph.resolve(identity, at)
        state = self._touch(resolution, call)
        if resolution.merged_ids:
            batch.emit(_merged(resolution, call), cause=call)
        if isinstance(data, IngestAlias):
            return
        observation = _observation(data, at, self.rules)
        state.observe(observation, self.rules)
        if observation.revenue is not None:
            self.purchased.add(resolution.profile_id)
        self.history.append(_history_row(resolution.profile_id, call))
        self.behaviours.append((resolution.profile_id, call))

    def _touch(self, resolution: Resolution, call: Event[Any]) -> ProfileState:
        """The resolved profile's state, with merged profiles absorbed and its view before."""
        profile_id = resolution.profile_id
        state = self.profiles.get(profile_id)
        if state is None:  # not setdefault: that would build a ProfileState for every call
            state = self.profiles[profile_id] = ProfileState()
        if profile_id not in self.before:
            self.before[profile_id] = {} if resolution.created else self._view(state)
        for merged_id in resolution.merged_ids:
            merged = self.profiles.pop(merged_id, None)
            if merged is not None:
                state.absorb(merged, self.rules)
                if merged.purchases is not None:
                    self.purchased.add(profile_id)
            self.before.pop(merged_id, None)
            self.last_cause.pop(merged_id, None)
        self.last_cause[profile_id] = call
        return state

    def apply_to_known_profiles(self, events: Sequence[Event[KnownProfileEvent]]) -> None:
        """Apply outcomes, credits and change requests to the profiles they name (survivors
        followed through merges; an erased profile's are dropped)."""
        for event in events:
            now = self.current.get(event.data.profile_id)
            if now is None:
                continue  # erased
            profile_id = self.graph.canonical(now)
            state = self.profiles[profile_id]
            if profile_id not in self.before:
                self.before[profile_id] = self._view(state)
            _apply_known(state, event.data)
            self.last_cause[profile_id] = event

    def score_purchases(self, model: ScoreModel | None, churn_horizon_days: float) -> None:
        """Score the profiles whose purchases changed with the latest fit, if there is one."""
        if model is None:
            return
        histories = {
            profile_id: history
            for profile_id in {self.graph.canonical(purchaser) for purchaser in self.purchased}
            if (history := self.profiles[profile_id].purchase_history(self.as_of)) is not None
        }
        try:
            scored = predict(model, histories, self.as_of, churn_horizon_days)
        except (ValueError, ArithmeticError):
            # A numerical failure of the model must not hold up the purchases themselves.
            _log.exception("Scoring purchases with fit %d failed; scores kept", model.fit_id)
            return
        for profile_id, scores in scored.items():
            self.profiles[profile_id].predicted = scores

    def emit_updates(self, batch: Batch, chunks: _BehaviourChunks | None = None) -> None:
        """Emit the calls' behaviours in order, then a `profile.updated` per changed profile
        whose last cause was not a call with a behaviour: that behaviour carries the profile's
        changes in the batch instead (the others carry none). The behaviours of import rows
        travel in `chunks`, when the batch had any."""
        behaviours = self.behaviours
        last_behaviour = {profile_id: index for index, (profile_id, _) in enumerate(behaviours)}
        carried: dict[int, list[ProfileChange]] = {}
        updates: list[tuple[Event[ProfileUpdated], Event[Any]]] = []
        for profile_id, cause in self.last_cause.items():
            found = changes(self.before[profile_id], self._view(self.profiles[profile_id]))
            if not found:
                continue
            index = last_behaviour.get(profile_id)
            if index is not None and behaviours[index][1] is cause:
                carried[index] = _profile_changes(found)
            else:
                updates.append((_updated(profile_id, found, cause), cause))
        now = self.now
        for index, (profile_id, call) in enumerate(behaviours):
            behaviour = _behaviour(profile_id, call, now, carried.get(index))
            if chunks is None:
                batch.emit(behaviour, cause=call)
            else:
                chunks.emit(batch, behaviour, call)
        if chunks is not None:
            chunks.finish(batch, now)
        for update, cause in updates:
            batch.emit(update, cause=cause)

    async def save(self, store: ProfileStore, connection: Connection, history: int) -> None:
        merges = self.graph.merges()
        await store.record_merges(connection, merges)
        new_links = self.graph.new_links()
        await store.link(connection, new_links)
        await store.release_claims(connection, self.claimed.difference(new_links))
        canonical = self.graph.canonical
        touched = {canonical(pid) for pid in self.last_cause}
        await store.save_profiles(
            connection,
            {
                pid: (
                    self.graph.created_at[pid],
                    self.profiles[pid],
                    self.profiles[pid].next_review(self.as_of, self.rules),
                )
                for pid in touched
            },
            self.as_of,
        )
        rows = self.history
        if merges:  # rows of profiles merged later in the batch move to their survivor
            canonical = self.graph.canonical
            rows = [
                row
                if canonical(row.profile_id) == row.profile_id
                else HistoryRow(
                    canonical(row.profile_id),
                    row.message_id,
                    row.event,
                    row.kind,
                    row.occurred_at,
                    row.properties,
                )
                for row in rows
            ]
        await store.add_history(connection, rows)
        await store.trim_history(connection, self._over_history(touched, history), history)

    def _over_history(self, touched: set[str], history: int) -> list[str]:
        # Trimming runs once a profile is a quarter over its history, not after every event.
        over = [pid for pid in touched if self.profiles[pid].history > history + history // 4]
        for pid in over:
            self.profiles[pid].history = history
        return over

    def _view(self, state: ProfileState) -> dict[str, Any]:
        return state.view(self.as_of, self.rules)


@dataclass
class _BehaviourChunks:
    """The behaviours of import rows, gathered into `behavior.identified_chunk` events by the
    partition of behavior.v1 their profile ids go to. Any other behaviour is emitted alone,
    after the open chunk of its partition, so each profile's behaviours keep their order."""

    from_chunks: set[int]  # the `id` of each call that came in an import chunk
    open: PartitionChunks[tuple[BehaviorOccurred, Event[IngestCall]]]

    def emit(
        self, batch: Batch, behaviour: Event[BehaviorOccurred], call: Event[IngestCall]
    ) -> None:
        key = behaviour.key.encode()
        if id(call) in self.from_chunks:
            size = _approximate_size(behaviour.data)
            for rows in self.open.add(key, (behaviour.data, call), size):
                _emit_chunk(batch, rows, behaviour.time)
            return
        earlier = self.open.close(self.open.partition(key))
        if earlier is not None:
            _emit_chunk(batch, earlier, behaviour.time)
        batch.emit(behaviour, cause=call)

    def finish(self, batch: Batch, now: datetime) -> None:
        for rows in self.open.close_all():
            _emit_chunk(batch, rows, now)


def _approximate_size(behaviour: BehaviorOccurred) -> int:
    """About the bytes of the behaviour's JSON, from its parts that vary (the model's own
    serialiser, which the outbox runs once for the whole chunk, costs ten times this)."""
    varying = [
        behaviour.properties,
        behaviour.context,
        [(change.field, change.before, change.after) for change in behaviour.profile_changes],
    ]
    try:
        return _FIXED_SIZE + len(orjson.dumps(varying))
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, which only the model writes
        return len(event_value(behaviour))


# What a behaviour's JSON holds besides its varying parts: names, ids and times, with room.
_FIXED_SIZE = 512


def _emit_chunk(
    batch: Batch, rows: Sequence[tuple[BehaviorOccurred, Event[IngestCall]]], now: datetime
) -> None:
    chunk = BehaviorIdentifiedChunk.model_construct(rows=[behaviour for behaviour, _ in rows])
    first, cause = rows[0]
    batch.emit(Event(chunk, first.profile_id, SOURCE, time=now), cause=cause)


def _apply_known(state: ProfileState, data: KnownProfileEvent) -> None:
    if isinstance(data, ConversionAttributed):
        value = float(data.value) if data.value is not None else None
        state.record_credit(value, data.currency, data.credit_share)
    elif isinstance(data, ProfileChangeRequested):
        at = data.occurred_at.timestamp()
        state.set_traits(data.set_traits, at)
        state.unset_traits(data.unset_traits, at)
        if data.add_tags or data.remove_tags:
            state.change_tags(data.add_tags, data.remove_tags, at)
    else:
        state.record_outcome(data.channel, _OUTCOME_NAMES[type(data)], data.occurred_at.timestamp())


def _observation(data: IngestCall, at: float, rules: FeatureRules) -> Observation:
    kind = _KINDS[type(data)]
    if kind == "track":
        track = cast(IngestTrack, data)
        return Observation(
            track.event,
            kind,
            at,
            None,
            features.order_revenue(track.event, track.properties, rules),
            features.category_of(track.properties),
            features.refunded(track.event, track.properties, rules),
        )
    if kind == "page" or kind == "screen":
        page = cast(IngestPage | IngestScreen, data)
        return Observation(
            page.name or kind,
            kind,
            at,
            None,
            None,
            features.category_of(page.properties, page.category),
        )
    traits = cast(IngestIdentify, data).traits if kind == "identify" else None
    return Observation(kind, kind, at, traits)


# Dispatch on the exact type: isinstance against pydantic models goes through ABCMeta.
_KINDS: dict[type[Any], BehaviorKind] = {
    IngestTrack: "track",
    IngestPage: "page",
    IngestScreen: "screen",
    IngestIdentify: "identify",
    IngestGroup: "group",
}


def _kind(data: IngestCall) -> BehaviorKind:
    return _KINDS[type(data)]


def _event_name(data: IngestCall) -> str:
    kind = _KINDS[type(data)]
    if kind == "track":
        return cast(IngestTrack, data).event
    if kind == "page" or kind == "screen":
        return cast(IngestPage | IngestScreen, data).name or kind
    return kind


def _properties(data: IngestCall) -> dict[str, Any]:
    kind = _KINDS.get(type(data))
    if kind == "track" or kind == "page" or kind == "screen":
        return cast(IngestTrack | IngestPage | IngestScreen, data).properties
    if kind == "group":
        group = cast(IngestGroup, data)
        return {**group.traits, "group_id": group.group_id}
    if kind == "identify":
        return cast(IngestIdentify, data).traits
    return {}


def _history_row(profile_id: str, call: Event[IngestCall]) -> HistoryRow:
    data = call.data
    kind = _KINDS[type(data)]
    return HistoryRow(
        profile_id, call.id, _event_name(data), kind, data.timestamp, _properties(data)
    )


# BehaviorOccurred's message_id is an EventId: at most this long.
_MAX_EVENT_ID_LENGTH = 255
_BEHAVIOUR_FIELDS = tuple(BehaviorOccurred.model_fields)
_new_object = object.__new__
_set_attribute = object.__setattr__


def _behaviour(
    profile_id: str,
    call: Event[IngestCall],
    now: datetime,
    profile_changes: list[ProfileChange] | None = None,
) -> Event[BehaviorOccurred]:
    data = call.data
    kind = _KINDS[type(data)]
    fields: dict[str, Any] = {
        "profile_id": profile_id,
        "event": _event_name(data),
        "kind": kind,
        "properties": _properties(data),
        "context": data.context,
        "occurred_at": data.timestamp,
        "received_at": data.received_at,
        "user_id": data.user_id,
        "anonymous_id": data.anonymous_id,
        "message_id": call.id,
        "profile_changes": [] if profile_changes is None else profile_changes,
    }
    # Every field but the call's ce_id comes from the validated call (or is the profile id
    # this service made, a kind, or validated ProfileChanges): validating them again only
    # costs. A ce_id that is not a valid EventId is validated, so it fails here as it always did.
    valid_id = 0 < len(call.id) <= _MAX_EVENT_ID_LENGTH
    behaviour = _constructed(fields) if valid_id else BehaviorOccurred(**fields)
    return Event(behaviour, profile_id, SOURCE, new_event_id(), now)


def _constructed(fields: dict[str, Any]) -> BehaviorOccurred:
    """`BehaviorOccurred.model_construct(**fields)` given every field in order, without its
    per-field loop: the model has no aliases, private attributes, extras or post-init."""
    behaviour: BehaviorOccurred = _new_object(BehaviorOccurred)
    _set_attribute(behaviour, "__dict__", fields)
    _set_attribute(behaviour, "__pydantic_fields_set__", set(fields))
    _set_attribute(behaviour, "__pydantic_extra__", None)
    _set_attribute(behaviour, "__pydantic_private__", None)
    return behaviour


if (
    _BEHAVIOUR_FIELDS
    != (
        "profile_id",
        "event",
        "kind",
        "properties",
        "context",
        "occurred_at",
        "received_at",
        "user_id",
        "anonymous_id",
        "message_id",
        "profile_changes",
    )
    or BehaviorOccurred.__pydantic_post_init__ is not None
    or BehaviorOccurred.__private_attributes__
    or BehaviorOccurred.model_config.get("extra") == "allow"
    or any(f.alias or f.validation_alias for f in BehaviorOccurred.model_fields.values())
):
    raise RuntimeError("BehaviorOccurred changed: update handlers._behaviour and _constructed")


def _merged(resolution: Resolution, call: Event[IngestCall]) -> Event[ProfileMerged]:
    return Event(
        data=ProfileMerged(
            survivor_id=resolution.profile_id,
            merged_ids=list(resolution.merged_ids),
            reason="alias" if isinstance(call.data, IngestAlias) else "identify",
            occurred_at=call.data.timestamp,
            caused_by=call.id,
        ),
        key=resolution.profile_id,
        source=SOURCE,
    )


def _profile_changes(found: Sequence[Change]) -> list[ProfileChange]:
    return [ProfileChange(field=c.field, before=c.before, after=c.after) for c in found]


def _updated(profile_id: str, found: Sequence[Change], cause: Event[Any]) -> Event[ProfileUpdated]:
    return Event(
        data=ProfileUpdated(
            profile_id=profile_id,
            changes=_profile_changes(found),
            occurred_at=_event_time(cause),
            caused_by=cause.id,
        ),
        key=profile_id,
        source=SOURCE,
    )


def _event_time(cause: Event[Any]) -> datetime:
    """The event time of what caused a change: a call's timestamp, an outcome's occurred_at."""
    data = cause.data
    if isinstance(data, INGEST_CALLS):
        return data.timestamp
    occurred_at = getattr(data, "occurred_at", None)
    return occurred_at if isinstance(occurred_at, datetime) else cause.time
