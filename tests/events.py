"""Events as the services announce them, for tests to feed in: one builder per event type.

Each builder takes what a test cares about and fills in the rest: ids are fresh, times are
now, the key is the profile's. `at` is the event time (`occurred_at`, or `requested_at` for an
erasure). The profile changes a call or update carries are given as `traits` (`plan="premium"`
becomes `traits.plan`) or `changes` (by the field's whole path: `{"scores.rfm": 455}`, or
pairs `[("traits.plan", "basic"), ("traits.plan", None)]` where a path comes again).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from libs.common.events import (
    BehaviorIdentifiedChunk,
    BehaviorOccurred,
    CarriedConsent,
    ContactRule,
    ConversionAttributed,
    Event,
    JourneyRef,
    MessageClicked,
    MessageDelivered,
    MessageFailed,
    MessageOpened,
    MessageRendered,
    MessageRequested,
    MessageSent,
    MessageSuppressed,
    ProfileChange,
    ProfileDeleted,
    ProfileMerged,
    ProfileSnapshot,
    ProfileUpdated,
    SegmentEntered,
    SegmentExited,
)
from libs.common.events.behavior import BehaviorKind
from libs.common.events.message import _MessageOutcome

SOURCE = "closeloop/tests"
JOURNEY = JourneyRef(journey_id="jrn_test", journey_version=1, node_id="node_send")

Outcome = TypeVar("Outcome", bound=_MessageOutcome)


def unique(prefix: str) -> str:
    """A fresh id with a readable prefix: `unique("prf")` is `prf_3f2a…`."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


Changes = Mapping[str, Any] | Iterable[tuple[str, Any]]
"""Fields' new values by path: a mapping, or pairs where one path may come more than once."""


def profile_changes(
    traits: Mapping[str, Any] | None = None, changes: Changes | None = None
) -> list[ProfileChange]:
    """The changes setting `traits` (under `traits.`) and then `changes` (by whole path)."""
    found = [ProfileChange(field=f"traits.{name}", after=v) for name, v in (traits or {}).items()]
    pairs = changes.items() if isinstance(changes, Mapping) else changes or ()
    found += [ProfileChange(field=path, after=v) for path, v in pairs]
    return found


def behaviour(
    profile_id: str,
    event: str = "product_viewed",
    *,
    kind: BehaviorKind = "track",
    properties: Mapping[str, Any] | None = None,
    context: Mapping[str, Any] | None = None,
    traits: Mapping[str, Any] | None = None,
    changes: Changes | None = None,
    at: datetime | None = None,
    received_at: datetime | None = None,
    message_id: str | None = None,
    event_id: str | None = None,
    source: str = SOURCE,
) -> Event[BehaviorOccurred]:
    """A behaviour of `profile_id` (a track call unless `kind` says), happening at `at` and
    received at `received_at` (each now unless given). With `event_id`, that is the event's id
    and, unless `message_id` says otherwise, its message id too."""
    now = datetime.now(UTC)
    data = BehaviorOccurred(
        profile_id=profile_id,
        event=event,
        kind=kind,
        properties=dict(properties or {}),
        context=dict(context or {}),
        occurred_at=at or now,
        received_at=received_at or now,
        message_id=message_id or event_id or f"m-{uuid.uuid4()}",
        profile_changes=profile_changes(traits, changes),
    )
    return Event(data=data, key=profile_id, source=source, id=event_id)


def identified(
    profile_id: str,
    event: str = "identify",
    *,
    traits: Mapping[str, Any] | None = None,
    changes: Changes | None = None,
    at: datetime | None = None,
    message_id: str | None = None,
    source: str = SOURCE,
) -> Event[BehaviorOccurred]:
    """An identify whose call changed the profile: the changes travel with the behaviour, and
    no profile.updated is sent for them. Received when it happened (`at`, or now)."""
    return behaviour(
        profile_id,
        event,
        kind="identify",
        traits=traits,
        changes=changes,
        at=at,
        received_at=at,
        message_id=message_id,
        source=source,
    )


def identified_chunk(*identifies: Event[BehaviorOccurred]) -> Event[BehaviorIdentifiedChunk]:
    """Identify behaviours as one import chunk, keyed by the first one's profile."""
    rows = [event.data for event in identifies]
    return Event(BehaviorIdentifiedChunk(rows=rows), key=rows[0].profile_id, source=SOURCE)


def profile_updated(
    profile_id: str,
    *,
    traits: Mapping[str, Any] | None = None,
    changes: Changes | None = None,
    at: datetime | None = None,
    caused_by: str | None = None,
    source: str = SOURCE,
) -> Event[ProfileUpdated]:
    """profile.updated setting `traits` and `changes`, as profile announces a change no call
    caused."""
    data = ProfileUpdated(
        profile_id=profile_id,
        changes=profile_changes(traits, changes),
        occurred_at=at or datetime.now(UTC),
        caused_by=caused_by,
    )
    return Event(data=data, key=profile_id, source=source)


def merge(
    survivor_id: str,
    *merged_ids: str,
    at: datetime | None = None,
    source: str = SOURCE,
) -> Event[ProfileMerged]:
    """`merged_ids` turned out to be `survivor_id` (an identify linked them)."""
    data = ProfileMerged(
        survivor_id=survivor_id,
        merged_ids=list(merged_ids),
        reason="identify",
        occurred_at=at or datetime.now(UTC),
    )
    return Event(data=data, key=survivor_id, source=source)


def erasure(
    profile_id: str,
    *,
    at: datetime | None = None,
    erasure_request_id: str | None = None,
    source: str = SOURCE,
) -> Event[ProfileDeleted]:
    """The person asked to be erased, at `at` (now)."""
    data = ProfileDeleted(
        profile_id=profile_id,
        erasure_request_id=erasure_request_id or unique("era"),
        requested_at=at or datetime.now(UTC),
    )
    return Event(data=data, key=profile_id, source=source)


def entered(
    profile_id: str,
    segment_id: str,
    *,
    at: datetime | None = None,
    caused_by: str | None = None,
    profile: ProfileSnapshot | None = None,
    source: str = SOURCE,
) -> Event[SegmentEntered]:
    """The profile entered version 1 of the segment, in real time (with the facts it entered
    with, if given)."""
    data = SegmentEntered(
        segment_id=segment_id,
        segment_version=1,
        profile_id=profile_id,
        occurred_at=at or datetime.now(UTC),
        reason="realtime",
        caused_by=caused_by,
        profile=profile,
    )
    return Event(data=data, key=profile_id, source=source)


def exited(
    profile_id: str,
    segment_id: str,
    *,
    at: datetime | None = None,
    source: str = SOURCE,
) -> Event[SegmentExited]:
    """The profile left version 1 of the segment, in real time."""
    data = SegmentExited(
        segment_id=segment_id,
        segment_version=1,
        profile_id=profile_id,
        occurred_at=at or datetime.now(UTC),
        reason="realtime",
    )
    return Event(data=data, key=profile_id, source=source)


def facts(
    *,
    tags: list[str] | None = None,
    lifecycle_stage: str | None = None,
    top_category: str | None = None,
    **traits: Any,
) -> ProfileSnapshot:
    """The profile facts a request carries: `facts(email="li@example.com", first_name="Li")`."""
    return ProfileSnapshot(
        traits=traits,
        tags=tags or [],
        lifecycle_stage=lifecycle_stage,
        top_category=top_category,
    )


def requested(
    profile_id: str,
    template_id: str,
    channel: str = "email",
    *,
    journey: JourneyRef = JOURNEY,
    profile: ProfileSnapshot | None = None,
    variables: Mapping[str, Any] | None = None,
    subscription_topic: str | None = None,
    source: str = SOURCE,
    contact: ContactRule | None = None,
) -> Event[MessageRequested]:
    """A request as journey makes it, carrying `profile` (absent: as made before requests
    carried their profile's facts)."""
    request_id = f"req_{uuid.uuid4().hex[:16]}"
    data = MessageRequested(
        request_id=request_id,
        journey=journey,
        profile_id=profile_id,
        channel=channel,
        template_id=template_id,
        variables=dict(variables or {}),
        idempotency_key=f"{journey.journey_id}:v{journey.journey_version}:"
        f"{journey.node_id}:{profile_id}:{request_id}",
        profile=profile,
        subscription_topic=subscription_topic,
        contact=contact,
    )
    return Event(data=data, key=profile_id, source=source)


def rendered(
    channel: str,
    profile_id: str | None = None,
    *,
    key: str | None = None,
    recipient: str | None = None,
    subject: str | None = "Your oolong is waiting",
    body: str | None = "Hello from the tests",
    payload: dict[str, Any] | None = None,
    time_zone: str | None = None,
    subscription_topic: str | None = None,
    consent: CarriedConsent | None = None,
    source: str = SOURCE,
    contact: ContactRule | None = None,
) -> Event[MessageRendered]:
    """A message content rendered for `profile_id` (a fresh one), with idempotency key `key`
    (a fresh one), for dispatch to send; of `subscription_topic`, with the `consent` its
    profile's traits carried."""
    profile = profile_id or unique("prf")
    data = MessageRendered(
        request_id=unique("req"),
        profile_id=profile,
        channel=channel,
        template_id="tpl_test",
        template_version=1,
        subject=subject,
        body=body,
        payload=payload or {},
        recipient=recipient,
        idempotency_key=key or f"jrn_test:v1:node_send:{profile}:{uuid.uuid4().hex[:8]}",
        journey=JOURNEY,
        behavior_at=datetime.now(UTC),
        time_zone=time_zone,
        subscription_topic=subscription_topic,
        consent=consent,
        contact=contact,
    )
    return Event(data=data, key=profile, source=source)


def outcome(
    kind: type[Outcome],
    profile_id: str,
    *,
    message_id: str | None = None,
    request_id: str | None = None,
    channel: str = "email",
    journey: JourneyRef = JOURNEY,
    template_id: str = "tpl_test",
    template_version: int | None = None,
    variant_id: str | None = None,
    at: datetime | None = None,
    source: str = SOURCE,
    **extra: Any,
) -> Event[Outcome]:
    """An outcome of a message to `profile_id`, as dispatch announces it (`extra`: the kind's
    own fields, a click's `url`, a suppression's `reason`…). Without `request_id`, the request
    is `req_<message_id>`."""
    message_id = message_id or unique("msg")
    data = kind(
        message_id=message_id,
        request_id=request_id or f"req_{message_id}",
        profile_id=profile_id,
        channel=channel,
        journey=journey,
        template_id=template_id,
        template_version=template_version,
        variant_id=variant_id,
        occurred_at=at or datetime.now(UTC),
        **extra,
    )
    return Event(data=data, key=profile_id, source=source)


def answering(request: MessageRequested) -> dict[str, Any]:
    """The fields an outcome of the message `request` asked for takes from it:
    `sent(**answering(request))`."""
    return {
        "profile_id": request.profile_id,
        "request_id": request.request_id,
        "channel": request.channel,
        "journey": JourneyRef.model_validate(request.journey.model_dump()),
        "template_id": request.template_id,
    }


def sent(profile_id: str, **fields: Any) -> Event[MessageSent]:
    return outcome(MessageSent, profile_id, **fields)


def delivered(profile_id: str, **fields: Any) -> Event[MessageDelivered]:
    return outcome(MessageDelivered, profile_id, **fields)


def opened(profile_id: str, **fields: Any) -> Event[MessageOpened]:
    return outcome(MessageOpened, profile_id, **fields)


def clicked(
    profile_id: str, *, url: str = "https://shop.example.com/p/oolong", **fields: Any
) -> Event[MessageClicked]:
    return outcome(MessageClicked, profile_id, url=url, **fields)


def failed(
    profile_id: str, *, error: str = "provider said no", retryable: bool = False, **fields: Any
) -> Event[MessageFailed]:
    return outcome(MessageFailed, profile_id, error=error, retryable=retryable, **fields)


def suppressed(profile_id: str, *, reason: str, **fields: Any) -> Event[MessageSuppressed]:
    return outcome(MessageSuppressed, profile_id, reason=reason, **fields)


def conversion(
    profile_id: str,
    message_id: str,
    *,
    conversion_id: str | None = None,
    name: str = "order_completed",
    value: Decimal | None = None,
    currency: str | None = None,
    template_id: str | None = None,
    variant_id: str | None = None,
    channel: str | None = None,
    model: str = "linear",
    share: float = 1.0,
    at: datetime | None = None,
    key: str | None = None,
    source: str = SOURCE,
) -> Event[ConversionAttributed]:
    """`model`'s credit (`share` of it) for a conversion of `profile_id` to the message
    `message_id`, keyed by the profile unless `key` says."""
    data = ConversionAttributed.model_validate(
        {
            "conversion_id": conversion_id or unique("cnv"),
            "conversion_name": name,
            "profile_id": profile_id,
            "value": value,
            "currency": currency,
            "message_id": message_id,
            "template_id": template_id,
            "variant_id": variant_id,
            "channel": channel,
            "attribution_model": model,
            "credit_share": share,
            "occurred_at": at or datetime.now(UTC),
        }
    )
    return Event(data=data, key=key or profile_id, source=source)
