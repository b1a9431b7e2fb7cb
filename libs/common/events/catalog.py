"""The catalogue of the loop's topics and headers: who produces and consumes what, in one place."""

from __future__ import annotations

from dataclasses import dataclass

from libs.common import topics
from libs.common.events.envelope import EventData, registry


@dataclass(frozen=True, slots=True)
class Topic:
    """One Kafka topic, the services that write it and the services that read it."""

    name: str
    summary: str
    producers: tuple[str, ...]
    consumers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Header:
    """One Kafka header of a message on the loop's topics."""

    name: str
    description: str
    required: bool = True


_CONSUMING_SERVICES = ("profile", "segment", "journey", "content", "dispatch", "attribution")

TOPICS: tuple[Topic, ...] = (
    Topic(
        topics.INGEST,
        "Inputs to profiles: the Segment-spec calls ingest accepted, keyed by userId, else "
        "anonymousId; and journeys' profile change requests, keyed by profile id.",
        producers=("ingest", "journey"),
        consumers=("profile",),
    ),
    Topic(
        topics.BEHAVIOR,
        "What people did, resolved to their profile.",
        producers=("profile",),
        consumers=("segment", "journey", "attribution"),
    ),
    Topic(
        topics.PROFILE,
        "Profile changes, merges and erasures.",
        producers=("profile",),
        consumers=("segment", "journey", "content", "dispatch", "attribution"),
    ),
    Topic(
        topics.SEGMENT,
        "Profiles entering and leaving segments.",
        producers=("segment",),
        consumers=("profile", "journey"),
    ),
    Topic(
        topics.REQUESTS,
        "Messages journeys ask for.",
        producers=("journey",),
        consumers=("content",),
    ),
    Topic(
        topics.DELIVERIES,
        "Rendered messages, ready to send.",
        producers=("content",),
        consumers=("dispatch",),
    ),
    Topic(
        topics.OUTCOMES,
        "What became of each message: sent, failed, suppressed, delivered, opened, clicked…",
        producers=("dispatch",),
        consumers=("profile", "journey", "content", "attribution"),
    ),
    Topic(
        topics.ATTRIBUTION,
        "Conversions and the messages credited with them.",
        producers=("attribution",),
        consumers=("profile", "content"),
    ),
    Topic(
        topics.DLQ,
        "Messages a consumer gave up on, unchanged, with the error in headers; "
        "`python -m libs.common.bus.dlq replay` puts them back on their source topic.",
        producers=_CONSUMING_SERVICES,
        consumers=(),
    ),
)

CLOUDEVENT_HEADERS: tuple[Header, ...] = (
    Header("ce_specversion", "The CloudEvents version: `1.0`."),
    Header(
        "ce_id",
        "The event's unique id; for ingest events the client's Segment messageId. Consumers "
        "record it in their inbox and skip duplicates.",
    ),
    Header("ce_type", "The event type, `<noun>.<verb>`, e.g. `message.clicked`."),
    Header("ce_source", "The service that produced the event."),
    Header("ce_time", "When the event was produced, RFC 3339 with a time zone."),
    Header(
        "ce_dataschema",
        "The schema of the value, `urn:closeloop:schema:<type>:v<N>`: the `$id` of "
        "schemas/events/<type>/v<N>.json.",
    ),
    Header("content-type", "The value's media type: `application/json`."),
    Header("traceparent", "The W3C trace context, when the event is part of a trace.", False),
)

DLQ_HEADERS: tuple[Header, ...] = (
    Header("dlq_error", "Why the consumer gave up: the decode reason or the handler's error."),
    Header("dlq_error_type", "The error's class, e.g. `EventDecodeError`."),
    Header("dlq_source_topic", "The topic the message was read from."),
    Header("dlq_source_partition", "Its partition, in decimal."),
    Header("dlq_source_offset", "Its offset, in decimal."),
    Header("dlq_group", "The consumer group that gave up on it."),
    Header("dlq_failed_at", "When the consumer gave up, RFC 3339 with a time zone."),
)


def topic(name: str) -> Topic:
    """The catalogue entry of a topic."""
    for entry in TOPICS:
        if entry.name == name:
            return entry
    raise KeyError(f"topic {name!r} is not in the catalogue; add it to TOPICS")


def event_types(topic_name: str) -> list[type[EventData]]:
    """The registered event models carried by a topic, by type and version."""
    return [model for model in registry.all() if model.topic == topic_name]
