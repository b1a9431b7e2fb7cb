"""Settings of the dispatch service: how the sender claims, sends and takes over, consent and
SSRF defaults."""

from __future__ import annotations

from typing import Literal, Self

from pydantic import Field, IPvAnyNetwork, model_validator

from libs.common.settings import Settings
from services.dispatch.channels.config import CONFIGS

UncertainPolicy = Literal["resend", "give_up"]


class DispatchSettings(Settings):
    service_name: str = "dispatch"
    http_port: int = 8106

    dispatch_sender_batch: int = Field(
        default=500, ge=1, le=10_000, description="Ledger rows one sender claims at once."
    )
    dispatch_max_in_flight: int = Field(
        default=64,
        ge=1,
        le=4096,
        description="Provider calls in flight at once in one process: the most sends a crash "
        "of the process can leave uncertain (attempted, result unknown).",
    )
    dispatch_sender_poll_interval_ms: int = Field(
        default=100, ge=10, description="How often an idle sender looks for due rows."
    )
    dispatch_heartbeat_seconds: float = Field(
        default=1.0,
        gt=0,
        description="How often a sender process tells the ledger it is alive.",
    )
    dispatch_takeover_seconds: float = Field(
        default=5.0,
        gt=0,
        description="A sender not heard from this long is dead: other senders take over the "
        "rows it claimed. Several heartbeats long.",
    )
    dispatch_uncertain_sends: dict[str, UncertainPolicy] = Field(
        default_factory=dict,
        description="What a sender taking over a dead one's rows does with a send that was "
        "attempted and has no result, by channel kind (email, sms, push, wecom, wecom_contact, "
        "wechat, wechat_miniprogram, webhook): `resend` (at least once; the default) or "
        "`give_up` (failed, not retried).",
    )
    dispatch_provider_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="One provider call's time limit: past it, a transient error.",
    )
    dispatch_max_attempts: int = Field(
        default=5, ge=1, description="Sends tried before a transient error becomes final."
    )
    dispatch_retry_base_seconds: float = Field(
        default=2.0, gt=0, description="First retry delay; doubled per attempt."
    )
    dispatch_retry_max_seconds: float = Field(
        default=600.0, gt=0, description="The longest delay between two attempts."
    )
    dispatch_default_consent: bool = Field(
        default=True,
        description="Consent for a channel the profile's preferences do not mention: true is "
        "opt-out (send until they say no), false is opt-in (send only after a yes).",
    )
    dispatch_webhook_allowed_networks: list[IPvAnyNetwork] = Field(
        default_factory=list,
        description="Networks a webhook may reach although they are not public (loopback, "
        "private…), as a JSON list of CIDRs. Empty: only public addresses.",
    )

    dispatch_preference_link_days: float = Field(
        default=30,
        gt=0,
        le=400,
        description="How long a preference page link (`POST /preferences/{profile}/link`) "
        "works after it was made.",
    )

    dispatch_send_retention_days: float = Field(
        default=400,
        gt=0,
        description="How long a finished send (sent, delivered, failed, suppressed…) stays in the "
        "ledger after it was created; then it is deleted. Longer than the topics' retention "
        "(a redelivered request must still find its send; refused otherwise) and than every "
        "frequency cap's window (PUT /policies refuses a longer one).",
    )

    @model_validator(mode="after")
    def _ledger_outlives_topics(self) -> Self:
        if self.dispatch_send_retention_days * 24 <= self.topic_retention_hours:
            raise ValueError(
                "CLOSELOOP_DISPATCH_SEND_RETENTION_DAYS must be longer than "
                "CLOSELOOP_TOPIC_RETENTION_HOURS: a redelivered request must still find its send"
            )
        return self

    @model_validator(mode="after")
    def _takeover_waits_for_several_heartbeats(self) -> Self:
        # One late heartbeat (a slow commit, a GC pause) must not hand a live sender's rows over.
        if self.dispatch_takeover_seconds < 3 * self.dispatch_heartbeat_seconds:
            raise ValueError(
                "CLOSELOOP_DISPATCH_TAKEOVER_SECONDS must be at least three "
                "CLOSELOOP_DISPATCH_HEARTBEAT_SECONDS"
            )
        return self

    @model_validator(mode="after")
    def _uncertain_sends_name_channel_kinds(self) -> Self:
        unknown = sorted(set(self.dispatch_uncertain_sends) - set(CONFIGS))
        if unknown:
            raise ValueError(
                f"CLOSELOOP_DISPATCH_UNCERTAIN_SENDS names no channel kind: {', '.join(unknown)} "
                f"(kinds: {', '.join(sorted(CONFIGS))})"
            )
        return self
