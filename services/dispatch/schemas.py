"""The dispatch REST API's request and response models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.dispatch.channels.config import Kind

CHANNEL_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
TOPIC_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
PROFILE_PATTERN = r"^[^\x00]{1,128}$"
ChannelName = Annotated[str, StringConstraints(pattern=CHANNEL_PATTERN)]
TopicId = Annotated[str, StringConstraints(pattern=TOPIC_PATTERN)]
_Text = Annotated[str, StringConstraints(pattern=r"^[^\x00]*$")]


class ChannelRequest(BaseModel):
    """A channel to create (POST, with `name`) or its new configuration (PUT)."""

    model_config = ConfigDict(extra="forbid")

    name: ChannelName | None = Field(
        default=None, description="The name messages use as their `channel`; required on POST."
    )
    kind: Kind = Field(
        description="The adapter: email, webhook, sms, push, wecom, wecom_contact, wechat or "
        "wechat_miniprogram."
    )
    config: dict[str, Any] = Field(
        description="The kind's settings and secrets (see docs/dispatch.md). Secrets are never "
        "returned; on PUT, a secret left out keeps its stored value."
    )
    rate_per_second: float | None = Field(
        default=None, gt=0, le=1_000_000, description="Per-process send rate limit; none if null."
    )


class ChannelResponse(BaseModel):
    name: str
    kind: str
    config: dict[str, Any] = Field(description="The settings, without secrets.")
    secrets_set: list[str] = Field(description="Which secret fields have a stored value.")
    rate_per_second: float | None
    created_at: datetime
    updated_at: datetime


class ChannelList(BaseModel):
    channels: list[ChannelResponse]


class PreferencesRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    consent: dict[ChannelName, bool] = Field(
        default_factory=dict, description="Consent per channel; absent channels use the default."
    )
    unsubscribed: list[ChannelName] = Field(
        default_factory=list, max_length=100, description="Channels the profile unsubscribed from."
    )
    topics: dict[TopicId, dict[ChannelName, bool]] = Field(
        default_factory=dict,
        description="Subscribed (true) or not (false) per topic and channel; a topic or channel "
        "left out takes the topic's default. Each topic must exist.",
    )


class PreferencesResponse(BaseModel):
    profile_id: str
    consent: dict[str, bool]
    unsubscribed: list[str]
    topics: dict[str, dict[str, bool]] = Field(
        description="The profile's recorded answers per topic and channel."
    )
    default_consent: bool = Field(description="Consent assumed for a channel not in `consent`.")


class PreferencesPage(BaseModel):
    preferences: list[PreferencesResponse] = Field(
        description="Stored answers, in profile id order; a profile not listed has none."
    )
    default_consent: bool = Field(description="Consent assumed for a channel not in `consent`.")
    next: str | None = Field(description="The `after` of the next page; null on the last.")


class PreferenceLink(BaseModel):
    url: str = Field(description="The person's preference page, signed; send it to them.")
    expires_at: datetime


class TopicRequest(BaseModel):
    """A subscription topic to create (POST, with `topic_id`) or its new definition (PUT)."""

    model_config = ConfigDict(extra="forbid")

    topic_id: TopicId | None = Field(
        default=None, description="The id sends name as their `topic`; required on POST."
    )
    name: Annotated[_Text, StringConstraints(min_length=1, max_length=200)] = Field(
        description="What people see on their preference page."
    )
    description: Annotated[_Text, StringConstraints(max_length=2000)] = ""
    channels: list[ChannelName] = Field(
        min_length=1,
        max_length=32,
        description="The channels the topic is offered on (a box each on the preference page).",
    )
    default_subscribed: bool = Field(
        default=True,
        description="true: subscribed until they say no (opt-out); false: only after a yes.",
    )


class TopicResponse(BaseModel):
    topic_id: str
    name: str
    description: str
    channels: list[str]
    default_subscribed: bool
    created_at: datetime
    updated_at: datetime


class TopicList(BaseModel):
    topics: list[TopicResponse]


class ProfileMessage(BaseModel):
    """One message sent (or meant) to a person, from the send ledger."""

    message_id: str
    channel: str
    template_id: str
    template_version: int
    variant_id: str | None
    journey: dict[str, Any] = Field(description="The journey, version and node that asked.")
    subject: str | None
    status: str = Field(description="pending, sending, sent, delivered, failed or suppressed.")
    error: str | None = Field(description="Why it failed or was suppressed.")
    created_at: datetime = Field(description="When dispatch received the rendered message.")
    sent_at: datetime | None
    unsubscribed_at: datetime | None


class ProfileMessages(BaseModel):
    profile_id: str
    messages: list[ProfileMessage] = Field(description="Newest first.")


class PolicyDocument(BaseModel):
    """Frequency caps, quiet hours and the arbitration window; validated as a whole (see
    docs/dispatch.md)."""

    model_config = ConfigDict(extra="forbid")

    caps: list[Any] = Field(default_factory=list)
    quiet_hours: Any = None
    arbitration: Any = None
