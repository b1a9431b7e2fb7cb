"""Settings of the segment service: how often window timers are checked, how much at once."""

from __future__ import annotations

from pydantic import Field

from libs.common.settings import Settings


class SegmentSettings(Settings):
    service_name: str = "segment"
    http_port: int = 8103

    segment_timer_poll_interval_ms: int = Field(
        default=1000, ge=10, description="How often the timer worker looks for due timers."
    )
    segment_timer_batch: int = Field(
        default=500, ge=1, description="Due timers claimed and re-evaluated in one transaction."
    )
    segment_outbox_chunk: int = Field(
        default=1000,
        ge=1,
        description="Membership events per outbox row when a bulk evaluation emits many.",
    )
    database_command_timeout_ms: int = Field(
        default=900_000,
        ge=100,
        description="How long a statement may wait for PostgreSQL's reply. Longer than the "
        "other services': creating a segment evaluates it over every profile in one statement "
        "(about 20 s for 1,000,000 profiles on the 2-core development machine).",
    )
    segment_behaviour_retention_days: float = Field(
        default=400,
        gt=0,
        description="How long a behaviour is kept for event conditions (then deleted): a "
        "window longer than this, or none, counts only the behaviours of this period.",
    )
