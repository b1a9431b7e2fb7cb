"""profile.v1: what changed about a person, who turned out to be whom, who asked to be erased."""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from libs.common import topics
from libs.common.events.envelope import EventData
from libs.common.events.fields import EntityId, EventId, EventTime, ProfileId
from libs.common.events.message import JourneyRef

_PROFILE = "prf_01JPB6W3K8N2X4Q7R9T0V5Y1ZC"

# The values of a profile's `lifecycle_stage`, which profile computes and segment and journey
# conditions name: one list, so a condition on a stage that does not exist is refused.
LifecycleStage = Literal["new", "active", "at_risk", "dormant", "churned"]
LIFECYCLE_STAGES: tuple[LifecycleStage, ...] = get_args(LifecycleStage)


class ProfileChange(BaseModel):
    """One field of a profile, before and after a change."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    field: Annotated[str, StringConstraints(min_length=1, max_length=255)] = Field(
        description="The path of the field that changed: `traits.plan`, `tags`, "
        "`lifecycle_stage`, `scores.rfm`, `scores.churn_risk`, `features.top_categories`…"
    )
    before: Any = Field(default=None, description="The value before; absent if it was unset.")
    after: Any = Field(default=None, description="The value after; absent if it was removed.")


class ProfileUpdated(EventData):
    """A profile's traits, tags, lifecycle stage, scores or top categories changed, for a reason
    other than a client's call: a change a call causes travels in its `behavior.occurred`
    (`profile_changes`). Segment memberships are not announced here: `segment.v1` says them."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "profile_id": _PROFILE,
                    "changes": [
                        {"field": "traits.plan", "before": "basic", "after": "premium"},
                        {"field": "tags", "before": ["tea_lover"], "after": ["tea_lover", "vip"]},
                        {"field": "scores.rfm", "before": 312, "after": 455},
                    ],
                    "occurred_at": "2025-03-14T09:26:53.120Z",
                    "caused_by": "ajs-next-1f0c7a3e6b2d4c9e8a5f",
                },
                {
                    "profile_id": _PROFILE,
                    "changes": [
                        {"field": "lifecycle_stage", "before": "active", "after": "at_risk"},
                        {"field": "scores.churn_risk", "before": 0.62, "after": 0.74},
                    ],
                    "occurred_at": "2025-03-14T09:26:53.120Z",
                },
            ]
        }
    )

    event_type = "profile.updated"
    topic = topics.PROFILE

    profile_id: ProfileId = Field(description="The profile that changed.")
    changes: list[ProfileChange] = Field(
        min_length=1, description="Every field that changed, with its value before and after."
    )
    occurred_at: EventTime = Field(
        description="Event time of the change: the time of the behaviour or outcome behind it."
    )
    caused_by: EventId | None = Field(
        default=None, description="The ce_id of the event that caused the change, if one did."
    )


class ProfileMerged(EventData):
    """Several profiles turned out to be one person: the survivor keeps everything.

    Every service that keys state by profile moves the merged profiles' state to the survivor.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "survivor_id": _PROFILE,
                    "merged_ids": ["prf_01JPB5ZQ1M7D3F8H2K6N4P9R0S"],
                    "reason": "identify",
                    "occurred_at": "2025-03-14T09:26:53.120Z",
                    "caused_by": "ajs-next-9b3e2d1c0a8f4e7d6c5b",
                }
            ]
        }
    )

    event_type = "profile.merged"
    topic = topics.PROFILE

    survivor_id: ProfileId = Field(description="The profile that remains; the event's key.")
    merged_ids: list[ProfileId] = Field(
        min_length=1, description="The profiles merged into the survivor; they no longer exist."
    )
    reason: Literal["identify", "alias"] = Field(
        description="`identify` linked an anonymous id to a known user; `alias` joined two users."
    )
    occurred_at: EventTime = Field(description="Event time of the call that caused the merge.")
    caused_by: EventId | None = Field(
        default=None, description="The ce_id of the identify or alias event behind the merge."
    )


class ProfileDeleted(EventData):
    """A person asked to be erased: every service deletes what it holds about the profile."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "profile_id": _PROFILE,
                    "erasure_request_id": "era_01JPC0A4T6W8Y2B5D7F9H1K3M5",
                    "requested_at": "2025-03-20T08:00:00Z",
                }
            ]
        }
    )

    event_type = "profile.deleted"
    topic = topics.PROFILE

    profile_id: ProfileId = Field(description="The profile to erase.")
    erasure_request_id: EntityId = Field(
        description="The erasure request, so each service can report that it complied."
    )
    requested_at: EventTime = Field(description="When the erasure was requested.")


class ProfileChangeRequested(EventData):
    """A journey's `update_profile` step asks profile to set traits and tags.

    It travels on ingest.v1, beside the clients' calls, because profile applies it in the same
    order as the behaviour of that person; profile answers with `profile.updated`.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": "upd_01JPBA1B2C3D4E5F6G7H8J9K0M",
                    "profile_id": _PROFILE,
                    "set_traits": {"winback_offer": "TEA-15"},
                    "unset_traits": ["churn_risk_note"],
                    "add_tags": ["winback_2025q1"],
                    "remove_tags": ["dormant"],
                    "journey": {
                        "journey_id": "jrn_winback",
                        "journey_version": 4,
                        "node_id": "node_tag_winback",
                    },
                    "occurred_at": "2025-03-14T09:26:54.010Z",
                    "caused_by": "5b0f7c5e-2f6a-4d57-9a0b-8b0c1d2e3f40",
                }
            ]
        }
    )

    event_type = "profile.change_requested"
    topic = topics.INGEST

    request_id: EntityId = Field(description="The id of this change request.")
    profile_id: ProfileId = Field(description="The profile to change; the event's key.")
    set_traits: dict[str, Any] = Field(
        default_factory=dict, description="Traits to set, last write wins by `occurred_at`."
    )
    unset_traits: list[Annotated[str, StringConstraints(min_length=1, max_length=255)]] = Field(
        default_factory=list, description="Traits to remove."
    )
    add_tags: list[Annotated[str, StringConstraints(min_length=1, max_length=255)]] = Field(
        default_factory=list, description="Tags to add."
    )
    remove_tags: list[Annotated[str, StringConstraints(min_length=1, max_length=255)]] = Field(
        default_factory=list, description="Tags to remove."
    )
    journey: JourneyRef | None = Field(
        default=None, description="The journey step that asked for the change, if one did."
    )
    occurred_at: EventTime = Field(description="Event time of the step that asked for it.")
    caused_by: EventId | None = Field(
        default=None, description="The ce_id of the event that moved the profile to the step."
    )
