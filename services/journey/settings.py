"""Settings of the journey service: where to check references, how timers and runs are paced,
how its learned decisions explore and how long their evidence is kept."""

from __future__ import annotations

from pydantic import Field

from libs.common.settings import Settings
from services.journey.timing import EXPLORE_SHARE


class JourneySettings(Settings):
    service_name: str = "journey"
    http_port: int = 8104

    journey_content_url: str = Field(
        default="http://127.0.0.1:8105",
        description="The content service, asked whether a send node's template exists; "
        "empty skips the check.",
    )
    journey_segment_url: str = Field(
        default="http://127.0.0.1:8103",
        description="The segment service, asked whether an entry segment exists; "
        "empty skips the check.",
    )
    journey_dispatch_url: str = Field(
        default="http://127.0.0.1:8106",
        description="The dispatch service: asked whether a send's subscription topic exists "
        "(empty skips the check), and for its policy and consent answers by a dry run (empty "
        "replays without them: no caps or quiet hours, everyone consenting).",
    )
    journey_dry_run_timeout_ms: int = Field(
        default=60_000, ge=1, description="How long a dry run may wait for segment or dispatch."
    )
    journey_dry_run_behaviour_limit: int = Field(
        default=1_000_000,
        ge=1,
        le=2_000_000,
        description="The most behaviours a dry run replays (the oldest first); it says when "
        "there were more.",
    )
    journey_reference_timeout_ms: int = Field(
        default=3000, ge=1, description="How long a reference check may take before a 503."
    )
    journey_timer_poll_interval_ms: int = Field(
        default=500, ge=10, description="How often the timer worker looks for due timers."
    )
    journey_timer_batch: int = Field(
        default=200, ge=1, description="Due timers claimed and advanced in one transaction."
    )
    journey_entry_per_minute: int = Field(
        default=600,
        ge=1,
        le=1_000_000,
        description="How many current members a minute enter a journey published with "
        "`entry.current_members` (or a broadcast sends to) when it gives no `per_minute`.",
    )
    journey_enrolment_batch: int = Field(
        default=500, ge=1, description="Current members entered in one transaction."
    )
    journey_enrolment_lookahead_s: float = Field(
        default=60.0,
        ge=0.0,
        description="How far ahead of their turn current members are taken and their runs "
        "scheduled (at a fixed time; at local times all are taken at the first).",
    )
    journey_step_limit: int = Field(
        default=100,
        ge=1,
        description="Nodes one advance may execute before the run is exited as runaway.",
    )
    journey_explore_share: float = Field(
        default=EXPLORE_SHARE,
        ge=0.0,
        le=1.0,
        description="Share of best-time and best-channel decisions that explore: an hour or "
        "channel drawn uniformly instead of the person's best.",
    )
    journey_prior_refit_interval_s: int = Field(
        default=3600,
        ge=1,
        description="How often the population's priors are refitted from the engagement "
        "evidence (and messages and decisions past their retention deleted).",
    )
    journey_message_retention_days: float = Field(
        default=30,
        gt=0,
        description="How long a message is remembered after its last outcome: an open or click "
        "later than that no longer counts.",
    )
    journey_decision_retention_days: float = Field(
        default=180, gt=0, description="How long learned decisions are kept for evaluation."
    )
    journey_run_retention_days: float = Field(
        default=90,
        gt=0,
        description="How long a finished run is kept after its last change (and after its goal's "
        "window) before it is deleted; each person's latest run of a journey is kept whatever "
        "its age, for the re-entry rule and the numbering of their next run.",
    )
