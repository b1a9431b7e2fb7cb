"""The dispatch REST API's request and response models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from services.dispatch.channels.config import Kind

CHANNEL_PATTERN = r"^[a-z][a-z0-9_]{0,31}$"
PROFILE_PATTERN = r"^[^\x00]{1,128}$"
ChannelName = Annotated[str, StringConstraints(pattern=CHANNEL_PATTERN)]


class ChannelRequest(BaseModel):
    """A channel to create (POST, with `name`) or its new configuration (PUT)."""

    model_config = ConfigDict(extra="forbid")

    name: ChannelName | None = Field(
        default=None, description="The name messages use as their `channel`; required on POST."
    )
    kind: Kind = Field(description="The adapter: email, webhook, sms, push, wecom or wechat.")
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


class PreferencesResponse(BaseModel):
    profile_id: str
    consent: dict[str, bool]
    unsubscribed: list[str]
    default_consent: bool = Field(description="Consent assumed for a channel not in `consent`.")


class PolicyDocument(BaseModel):
    """Frequency caps, quiet hours and the arbitration window; validated as a whole (see
    docs/dispatch.md)."""

    model_config = ConfigDict(extra="forbid")

    caps: list[Any] = Field(default_factory=list)
    quiet_hours: Any = None
    arbitration: Any = None
