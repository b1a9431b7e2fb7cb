"""Settings of the dispatch service: how the sender claims and sends, consent and SSRF defaults."""

from __future__ import annotations

from typing import Self

from pydantic import Field, IPvAnyNetwork, model_validator

from libs.common.settings import Settings


class DispatchSettings(Settings):
    service_name: str = "dispatch"
    http_port: int = 8106

    dispatch_sender_batch: int = Field(
        default=500, ge=1, le=10_000, description="Ledger rows one sender claims at once."
    )
    dispatch_sender_loops: int = Field(
        default=2,
        ge=1,
        le=16,
        description="Sender loops per process: one records results while another sends.",
    )
    dispatch_sender_concurrency: int = Field(
        default=32,
        ge=1,
        description="Provider calls in flight at once, per sender loop (each webhook call "
        "holds one keep-alive connection of the loops' shared pool).",
    )
    dispatch_sender_poll_interval_ms: int = Field(
        default=100, ge=10, description="How often an idle sender looks for due rows."
    )
    dispatch_sending_lease_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A row left `sending` this long (its sender crashed) is sent again, with "
        "the same idempotency key. Longer than the provider timeout.",
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

    @model_validator(mode="after")
    def _lease_outlasts_a_call(self) -> Self:
        # A sender starts a call only while the call can end inside the row's lease.
        if self.dispatch_sending_lease_seconds <= self.dispatch_provider_timeout_seconds:
            raise ValueError(
                "CLOSELOOP_DISPATCH_SENDING_LEASE_SECONDS must be longer than "
                "CLOSELOOP_DISPATCH_PROVIDER_TIMEOUT_SECONDS"
            )
        return self
