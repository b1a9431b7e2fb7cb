"""Segment calls into ingest events: validation naming the bad field, clock-skew correction.

Each accepted call is encoded straight into its Kafka message (no `Event` in between): at tens
of thousands of calls a second, every object made per call shows in the profile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from pydantic import ValidationError

from libs.common.bus import Message
from libs.common.events import (
    IngestAlias,
    IngestGroup,
    IngestIdentify,
    IngestPage,
    IngestScreen,
    IngestTrack,
)
from libs.common.events.envelope import event_headers, event_value, new_event_id
from libs.common.events.ingest import SegmentCall
from libs.common.limits import first_violation

SOURCE: Final = "closeloop/ingest"

CALL_MODELS: Final[Mapping[str, type[SegmentCall]]] = {
    "track": IngestTrack,
    "identify": IngestIdentify,
    "page": IngestPage,
    "screen": IngestScreen,
    "group": IngestGroup,
    "alias": IngestAlias,
}
# Segment's SDKs stringify numeric ids (analytics-python does); server code often sends numbers.
_ID_FIELDS: Final = ("messageId", "userId", "anonymousId", "groupId", "previousId")
# Set by ingest, never taken from the client.
_ASSIGNED_FIELDS: Final = ("sourceId", "receivedAt")


class CallRejected(ValueError):
    """A call ingest cannot accept; `field` names the Segment field at fault (None: the call)."""

    def __init__(self, field: str | None, reason: str) -> None:
        super().__init__(reason)
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class Receipt:
    """How a request arrived: which source sent it, when, and what its batch says of all calls.

    A batch's `sentAt` applies to calls without their own; its `context` and `integrations` are
    merged under each call's, as Segment's API does.
    """

    source_id: str
    received_at: datetime
    sent_at: object = None
    context: object = None
    integrations: object = None
    # The request's span when tracing is on: each call's event continues its trace.
    traceparent: str | None = None


@dataclass(frozen=True)
class Rejection:
    """One call of a batch or import that was not accepted, and why."""

    index: int
    field: str | None
    reason: str


def corrected_timestamp(
    timestamp: datetime, sent_at: datetime | None, received_at: datetime
) -> datetime:
    """Segment's clock-skew correction: shift the client's time by how far its clock is off.

    The client stamped `timestamp` and `sentAt` with the same (possibly wrong) clock, so
    `receivedAt - sentAt` is the skew, network latency aside.
    """
    if sent_at is None:
        return timestamp
    return timestamp + (received_at - sent_at)


def call_kind(call: Mapping[str, Any], default: str | None = None) -> str:
    """The call's `type`, which must be one ingest knows (batch items and import rows name it)."""
    kind = call.get("type", default)
    if not isinstance(kind, str) or kind not in CALL_MODELS:
        raise CallRejected("type", f"type must be one of {', '.join(CALL_MODELS)}")
    return kind


def to_message(kind: str, call: object, receipt: Receipt) -> Message:
    """The ingest event a call of `kind` becomes, as its Kafka message (keyed by the user, else
    the anonymous id; `ce_id` the messageId); raises CallRejected naming the field at fault."""
    if not isinstance(call, dict):
        raise CallRejected(None, "a call must be a JSON object")
    fields = {key: value for key, value in call.items() if value is not None}
    for name in _ASSIGNED_FIELDS:
        fields.pop(name, None)
    for name in _ID_FIELDS:
        if name in fields:
            fields[name] = _id(name, fields[name])
    if "messageId" not in fields:
        fields["messageId"] = new_event_id()
    _merge_shared(fields, "context", receipt.context)
    _merge_shared(fields, "integrations", receipt.integrations)
    if kind == "identify":
        _lift_context_traits(fields)
    # What every consumer can decode and store (libs/common/limits.py): refused here, rather
    # than accepted and then dead-lettered downstream, or a 500 from the encoder.
    violation = first_violation(fields)
    if violation is not None:
        raise CallRejected(violation.path, violation.message)
    timestamp, sent_at = _times(fields, receipt)
    fields |= {
        "sourceId": receipt.source_id,
        "receivedAt": receipt.received_at,
        "timestamp": timestamp,
        "sentAt": sent_at,
    }
    data = _validated(CALL_MODELS[kind], fields)
    identity = data.user_id or data.anonymous_id or ""
    return Message(
        data.topic,
        identity.encode(),
        event_value(data),
        event_headers(data, fields["messageId"], SOURCE, timestamp, receipt.traceparent),
        data.event_type,
    )


def accept_batch(
    calls: Sequence[object], receipt: Receipt, max_event_bytes: int
) -> tuple[list[Message], list[Rejection]]:
    """Each call of a batch accepted or rejected on its own, so one bad call loses no good ones.

    A call is too large when the event it becomes is larger than `max_event_bytes`.
    """
    messages: list[Message] = []
    rejections: list[Rejection] = []
    for index, call in enumerate(calls):
        try:
            if not isinstance(call, dict):
                raise CallRejected(None, "a call must be a JSON object")
            message = to_message(call_kind(call), call, receipt)
            if len(message.value or b"") > max_event_bytes:
                raise CallRejected(None, f"the call is larger than {max_event_bytes} bytes")
            messages.append(message)
        except CallRejected as rejected:
            rejections.append(Rejection(index, rejected.field, rejected.reason))
    return messages, rejections


def parse_time(value: object, field: str) -> datetime:
    """An ISO 8601 time; one without a zone is taken as UTC, as Segment does."""
    if not isinstance(value, str):
        raise CallRejected(field, f"{field} must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CallRejected(field, f"{field} is not an ISO 8601 date-time: {value[:64]!r}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def _id(name: str, value: object) -> object:
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise CallRejected(name, f"{name} must be a string")
    return value


def _merge_shared(fields: dict[str, Any], name: str, shared: object) -> None:
    if not isinstance(shared, Mapping):
        return
    own = fields.get(name, {})
    if isinstance(own, Mapping):
        fields[name] = {**shared, **own}


def _lift_context_traits(fields: dict[str, Any]) -> None:
    """An identify's traits are its `traits` over its `context.traits`: RudderStack's SDKs send
    them only in the context, Segment's in `traits`; a key in both is the call's own."""
    context = fields.get("context")
    lifted = context.get("traits") if isinstance(context, Mapping) else None
    own = fields.get("traits", {})
    if isinstance(lifted, Mapping) and isinstance(own, Mapping):
        fields["traits"] = {**lifted, **own}


def _times(fields: Mapping[str, Any], receipt: Receipt) -> tuple[datetime, datetime | None]:
    received_at = receipt.received_at
    raw_sent_at = fields.get("sentAt", receipt.sent_at)
    sent_at = None if raw_sent_at is None else parse_time(raw_sent_at, "sentAt")
    # RudderStack's SDKs name the client's time `originalTimestamp`; Segment's `timestamp`.
    name = "timestamp" if "timestamp" in fields else "originalTimestamp"
    if name not in fields:
        return received_at, sent_at
    timestamp = parse_time(fields[name], name)
    try:
        return corrected_timestamp(timestamp, sent_at, received_at), sent_at
    except OverflowError:
        raise CallRejected("sentAt", "sentAt is too far from the time ingest received it") from None


def _validated(model: type[SegmentCall], fields: Mapping[str, Any]) -> SegmentCall:
    try:
        return model.__pydantic_validator__.validate_python(fields)  # type: ignore[no-any-return]
    except ValidationError as error:
        first = error.errors(include_url=False)[0]
        location = ".".join(str(part) for part in first["loc"])
        if not location and fields.get("userId") is None:
            location = "userId"
        reason = first["msg"].removeprefix("Value error, ")
        raise CallRejected(
            location or None, f"{location}: {reason}" if location else reason
        ) from None
