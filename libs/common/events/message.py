"""requests.v1, deliveries.v1, outcomes.v1: a message asked for, rendered, and what became of it."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    AnyUrl,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    UrlConstraints,
)

from libs.common import topics
from libs.common.events.envelope import EventData
from libs.common.events.fields import (
    Channel,
    EntityId,
    EventId,
    EventTime,
    ProfileId,
    Properties,
    Topic,
    VersionNumber,
)

IdempotencyKey = Annotated[str, StringConstraints(min_length=1, max_length=255)]
SuppressionReason = Literal["consent", "frequency_cap", "quiet_hours", "unsubscribed"]
DeferralReason = Literal["frequency_cap", "quiet_hours"]
OnConflict = Literal["drop", "defer"]
DEFAULT_PRIORITY = 50

_PROFILE = "prf_01JPB6W3K8N2X4Q7R9T0V5Y1ZC"
_REQUEST = "req_01JPB6W4A1C3E5G7J9L2N4Q6S8"
_KEY = "jrn_winback:v4:node_send_coupon:prf_01JPB6W3K8N2X4Q7R9T0V5Y1ZC:1"
_JOURNEY: dict[str, Any] = {
    "journey_id": "jrn_winback",
    "journey_version": 4,
    "node_id": "node_send_coupon",
}


class JourneyRef(BaseModel):
    """The journey step a message belongs to."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    journey_id: EntityId = Field(description="The journey.")
    journey_version: VersionNumber = Field(description="The published version the profile runs.")
    node_id: EntityId = Field(description="The `send` node that asked for the message.")


class ContactRule(BaseModel):
    """How the contact policy treats a message, as its journey (or broadcast) says: its
    priority against other marketing messages to the same person, what becomes of it when it
    loses, and whether it is transactional (caps, arbitration and quiet hours do not apply)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    priority: int = Field(
        default=DEFAULT_PRIORITY,
        ge=0,
        le=100,
        description="0 to 100: the higher wins when marketing messages compete for a person.",
    )
    on_conflict: OnConflict = Field(
        default="drop",
        description="When it loses or meets a full cap: `drop` (suppressed) or `defer` (sent "
        "once the cap has room again).",
    )
    transactional: bool = Field(
        default=False,
        description="A message the person asked for (a receipt, a password reset): never "
        "capped, arbitrated, held for quiet hours or stopped by marketing consent.",
    )


class ArbitrationWinner(BaseModel):
    """The message that took the person's cap from a suppressed one."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    message_id: EntityId = Field(description="Dispatch's id of the winning send.")
    journey: JourneyRef = Field(description="The journey step of the winning message.")
    priority: int = Field(ge=0, le=100, description="The winning message's priority.")


class ProfileSnapshot(BaseModel):
    """The profile facts a message needs, as journey knew them when it asked: what templates
    render (`profile.*`), the address each channel sends to, and the time zone for quiet hours.
    They travel with the request so that content and dispatch keep no copy of the profile."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    traits: Properties = Field(default_factory=dict, description="The profile's traits.")
    # No bounds beyond profile's own: a snapshot repeats what profile accepted, and a request
    # must not be refused for a fact journey only copied.
    tags: list[str] = Field(default_factory=list, description="The profile's tags, sorted.")
    lifecycle_stage: str | None = Field(default=None, description="The lifecycle stage.")
    scores: Properties = Field(
        default_factory=dict, description="The profile's scores (RFM, predictive, engagement)."
    )
    top_category: str | None = Field(
        default=None, description="The first of the profile's top categories."
    )


class CarriedConsent(BaseModel):
    """What the profile's traits say about consent and subscriptions, by the documented mapping
    (`libs/common/consent.py`): dispatch honours it beside the answers it records itself."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    channels: dict[Channel, bool] = Field(
        default_factory=dict,
        description="Consent per channel, from `<channel>_opt_in` traits: false withdraws it.",
    )
    subscriptions: dict[Topic, dict[str, bool]] = Field(
        default_factory=dict,
        description="Subscribed or not, per topic and channel (`*`: every channel), from the "
        "`subscriptions` trait: false unsubscribes.",
    )


class MessageRequested(EventData):
    """A journey reached a `send` node for a profile: content is asked to render a message."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": _REQUEST,
                    "journey": _JOURNEY,
                    "profile_id": _PROFILE,
                    "channel": "email",
                    "template_id": "tpl_winback_coupon",
                    "variables": {
                        "event": {"event": "cart_abandoned", "properties": {"item_count": 2}},
                        "coupon_code": "TEA-15-3KD9",
                    },
                    "idempotency_key": _KEY,
                    "triggered_by": "5b0f7c5e-2f6a-4d57-9a0b-8b0c1d2e3f40",
                    "behavior_at": "2025-03-14T09:26:53.120Z",
                    "profile": {
                        "traits": {
                            "first_name": "Li Wei",
                            "email": "li.wei@example.com",
                            "timezone": "Asia/Shanghai",
                        },
                        "tags": ["tea_lover"],
                        "lifecycle_stage": "at_risk",
                        "scores": {"rfm": 455, "churn_risk": 0.74},
                        "top_category": "oolong",
                    },
                    "contact": {"priority": 80, "on_conflict": "defer", "transactional": False},
                }
            ]
        }
    )

    event_type = "message.requested"
    topic = topics.REQUESTS

    request_id: EntityId = Field(description="The journey's id for this request.")
    journey: JourneyRef = Field(description="The journey step that asked for the message.")
    profile_id: ProfileId = Field(description="The profile to send to.")
    channel: Channel = Field(description="The channel to send on.")
    template_id: EntityId = Field(description="The template to render.")
    variables: Properties = Field(
        default_factory=dict,
        description="Template variables, e.g. the triggering event; content adds the profile.",
    )
    idempotency_key: IdempotencyKey = Field(
        description="Unique per journey run and step: dispatch sends at most one message per key."
    )
    triggered_by: EventId | None = Field(
        default=None, description="The ce_id of the event that moved the profile to this step."
    )
    behavior_at: EventTime | None = Field(
        default=None,
        description="Event time of the behaviour behind the request, for the loop-latency metric.",
    )
    profile: ProfileSnapshot | None = Field(
        default=None,
        description="The profile's facts as journey knew them: content renders with them and "
        "sends to the address in them. Absent only in requests made before this field existed.",
    )
    subscription_topic: Topic | None = Field(
        default=None,
        description="The subscription topic the send names (newsletter, promotions…); absent "
        "for a message that belongs to none.",
    )
    contact: ContactRule | None = Field(
        default=None,
        description="The journey's contact rule (priority, on_conflict, transactional); "
        "absent: a marketing message of the default priority, dropped when it loses.",
    )


class MessageRendered(EventData):
    """Content rendered a requested message: dispatch sends it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": _REQUEST,
                    "profile_id": _PROFILE,
                    "channel": "email",
                    "template_id": "tpl_winback_coupon",
                    "template_version": 7,
                    "variant_id": "var_b_short_subject",
                    "subject": "Li Wei, your oolong is waiting: 15% off",
                    "body": "<p>Hi Li Wei,</p><p>Use <b>TEA-15-3KD9</b> before Sunday.</p>",
                    "recipient": "li.wei@example.com",
                    "idempotency_key": _KEY,
                    "journey": _JOURNEY,
                    "behavior_at": "2025-03-14T09:26:53.120Z",
                    "time_zone": "Asia/Shanghai",
                    "contact": {"priority": 80, "on_conflict": "defer", "transactional": False},
                },
                {
                    "request_id": "req_01JPB7K2M4P6R8T0W2Y4A6C8E0",
                    "profile_id": _PROFILE,
                    "channel": "push",
                    "template_id": "tpl_back_in_stock",
                    "template_version": 2,
                    "body": "Oolong Tea 250g is back in stock.",
                    "payload": {"deep_link": "teahouse://p/tea-oolong-250g", "badge": 1},
                    "idempotency_key": "jrn_restock:v1:node_push:prf_01JPB6W3K8N2X4Q7R9T0V5Y1ZC:1",
                    "journey": {
                        "journey_id": "jrn_restock",
                        "journey_version": 1,
                        "node_id": "node_push",
                    },
                },
            ]
        }
    )

    event_type = "message.rendered"
    topic = topics.DELIVERIES

    request_id: EntityId = Field(description="The request this message answers.")
    profile_id: ProfileId = Field(description="The profile to send to.")
    channel: Channel = Field(description="The channel to send on.")
    template_id: EntityId = Field(description="The template rendered.")
    template_version: VersionNumber = Field(description="The template version rendered.")
    variant_id: EntityId | None = Field(
        default=None, description="The variant the bandit picked; absent for a single variant."
    )
    subject: Annotated[str, StringConstraints(max_length=998)] | None = Field(
        default=None, description="The rendered subject or title (email, push)."
    )
    body: Annotated[str, StringConstraints(max_length=500_000)] | None = Field(
        default=None, description="The rendered body: HTML for email, text for SMS and push."
    )
    payload: Properties = Field(
        default_factory=dict,
        description="Channel-specific rendered data: a webhook's JSON, a push's deep link…",
    )
    recipient: Annotated[str, StringConstraints(min_length=1, max_length=2048)] | None = Field(
        default=None,
        description="An address hint (email, phone, device token, URL); absent, dispatch uses "
        "the profile's address for the channel.",
    )
    idempotency_key: IdempotencyKey = Field(description="The request's idempotency key.")
    journey: JourneyRef = Field(description="The journey step that asked for the message.")
    behavior_at: EventTime | None = Field(
        default=None, description="The request's behaviour time, for the loop-latency metric."
    )
    time_zone: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = Field(
        default=None,
        description="The profile's IANA time zone (`traits.timezone`) as the request carried "
        "it: dispatch judges quiet hours by it (UTC when absent or unknown).",
    )
    subscription_topic: Topic | None = Field(
        default=None,
        description="The subscription topic of the message: dispatch suppresses it for a "
        "profile unsubscribed from the topic on the channel, and gives email a one-click "
        "unsubscribe from it (RFC 8058). Absent for a message that belongs to no topic.",
    )
    consent: CarriedConsent | None = Field(
        default=None,
        description="What the profile's traits said about consent and subscriptions when the "
        "request was made; absent when they said nothing.",
    )
    contact: ContactRule | None = Field(
        default=None,
        description="The request's contact rule, as it carried it: dispatch arbitrates by it.",
    )


def _outcome(**extra: Any) -> dict[str, Any]:
    return {
        "message_id": "msg_01JPB6W5D2F4H6K8M0P2R4T6V8",
        "request_id": _REQUEST,
        "profile_id": _PROFILE,
        "channel": "email",
        "journey": _JOURNEY,
        "template_id": "tpl_winback_coupon",
        "template_version": 7,
        "variant_id": "var_b_short_subject",
        "occurred_at": "2025-03-14T09:26:55.310Z",
        **extra,
    }


class _MessageOutcome(EventData):
    """What every outcome of a send says about the message."""

    topic: ClassVar[str] = topics.OUTCOMES

    message_id: EntityId = Field(description="Dispatch's id of the send (its send-ledger row).")
    request_id: EntityId = Field(description="The request the message answered.")
    profile_id: ProfileId = Field(description="The profile the message was for.")
    channel: Channel = Field(description="The channel of the message.")
    journey: JourneyRef = Field(description="The journey step that asked for the message.")
    template_id: EntityId = Field(description="The template rendered.")
    template_version: VersionNumber | None = Field(
        default=None, description="The template version rendered."
    )
    variant_id: EntityId | None = Field(
        default=None, description="The variant sent; absent for a single variant."
    )
    occurred_at: EventTime = Field(
        description="Event time of the outcome: when the provider or recipient acted."
    )


class MessageSent(_MessageOutcome):
    """The provider accepted the message."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [_outcome(provider_message_id="0100018e3b2c1d4e-5f6a7b8c-000000")]
        }
    )

    event_type = "message.sent"

    provider_message_id: Annotated[str, StringConstraints(max_length=255)] | None = Field(
        default=None, description="The provider's id for the message, to match its receipts."
    )


class MessageFailed(_MessageOutcome):
    """Sending the message failed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _outcome(error="SMTP 421 4.7.0 try again later", retryable=True),
                _outcome(error="SMTP 550 5.1.1 mailbox does not exist", retryable=False),
            ]
        }
    )

    event_type = "message.failed"

    error: Annotated[str, StringConstraints(min_length=1, max_length=2000)] = Field(
        description="What went wrong, as the provider or adapter said it."
    )
    retryable: bool = Field(description="Whether dispatch will try again.")


# The message that won arbitration, as the examples of a suppression and a deferral show it.
_EXAMPLE_WINNER: Final = {
    "message_id": "msg_01JPB6W9Q3S5U7W9Y1A3C5E7G9",
    "journey": {
        "journey_id": "jrn_order_follow_up",
        "journey_version": 2,
        "node_id": "node_review",
    },
    "priority": 80,
}


class MessageSuppressed(_MessageOutcome):
    """Dispatch decided not to send the message."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _outcome(reason="frequency_cap"),
                _outcome(reason="consent"),
                _outcome(
                    reason="frequency_cap",
                    won_by=_EXAMPLE_WINNER,
                ),
            ]
        }
    )

    event_type = "message.suppressed"

    reason: SuppressionReason = Field(
        description="`consent`: no consent for the channel; `frequency_cap`: the profile had "
        "enough messages in the window; `quiet_hours`: it could not wait out the profile's quiet "
        "hours; `unsubscribed`: the profile unsubscribed (from the channel, or from `topic`)."
    )
    subscription_topic: Topic | None = Field(
        default=None,
        description="The message's subscription topic, when the reason concerns it: "
        "`unsubscribed` from it, or `consent` never given to an opt-in topic.",
    )
    won_by: ArbitrationWinner | None = Field(
        default=None,
        description="Present when the message lost arbitration (reason `frequency_cap`): the "
        "message of higher priority, or as high and requested earlier, that took the cap.",
    )


class MessageDeferred(_MessageOutcome):
    """Dispatch put off sending the message: it decides it again at `until`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _outcome(reason="quiet_hours", until="2025-03-15T00:00:00Z"),
                _outcome(
                    reason="frequency_cap",
                    until="2025-03-15T09:26:55Z",
                    won_by=_EXAMPLE_WINNER,
                ),
            ]
        }
    )

    event_type = "message.deferred"

    reason: DeferralReason = Field(
        description="`quiet_hours`: the profile's quiet hours, until they end; "
        "`frequency_cap`: it lost arbitration for a full cap and its rule is `defer`, until the "
        "cap has room."
    )
    # Not an EventTime: a deferral may reach days ahead (the policy's `max_defer`).
    until: AwareDatetime = Field(
        description="When dispatch decides the message again (and sends it, suppresses it, or "
        "defers it once more)."
    )
    won_by: ArbitrationWinner | None = Field(
        default=None,
        description="Present when the message lost arbitration (reason `frequency_cap`): the "
        "message of higher priority, or as high and requested earlier, that took the cap.",
    )


class MessageDelivered(_MessageOutcome):
    """The provider reported the message delivered."""

    model_config = ConfigDict(json_schema_extra={"examples": [_outcome()]})

    event_type = "message.delivered"


class MessageOpened(_MessageOutcome):
    """The recipient opened the message."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [_outcome(occurred_at="2025-03-14T12:40:02Z")]}
    )

    event_type = "message.opened"


class MessageClicked(_MessageOutcome):
    """The recipient clicked a tracked link in the message."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _outcome(
                    occurred_at="2025-03-14T12:40:31Z",
                    url="https://shop.example.com/p/tea-oolong-250g?utm_campaign=winback",
                )
            ]
        }
    )

    event_type = "message.clicked"

    url: Annotated[AnyUrl, UrlConstraints(max_length=2048)] = Field(
        description="The link's destination."
    )


class MessageUnsubscribed(_MessageOutcome):
    """The recipient unsubscribed through the message."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [_outcome(occurred_at="2025-03-15T07:02:44Z")]}
    )

    event_type = "message.unsubscribed"

    subscription_topic: Topic | None = Field(
        default=None,
        description="The topic the recipient unsubscribed from; absent: from the whole channel.",
    )
