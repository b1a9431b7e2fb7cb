"""segment.v1: a profile entered or left a segment."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field

from libs.common import topics
from libs.common.events.envelope import EventData
from libs.common.events.fields import EntityId, EventId, EventTime, ProfileId, VersionNumber
from libs.common.events.message import ProfileSnapshot

MembershipReason = Literal["realtime", "window_expired", "bulk"]


def _example(reason: str, **extra: Any) -> dict[str, Any]:
    return {
        "segment_id": "seg_repeat_buyers_30d",
        "segment_version": 3,
        "profile_id": "prf_01JPB6W3K8N2X4Q7R9T0V5Y1ZC",
        "occurred_at": "2025-03-14T09:26:53.120Z",
        "reason": reason,
        **extra,
    }


class _MembershipChange(EventData):
    """What entering and leaving a segment have in common."""

    topic = topics.SEGMENT

    segment_id: EntityId = Field(description="The segment.")
    segment_version: VersionNumber = Field(
        description="The version of the segment's definition that was evaluated."
    )
    profile_id: ProfileId = Field(description="The profile whose membership changed.")
    occurred_at: EventTime = Field(
        description="Event time of the change: the behaviour's time for `realtime`, the window's "
        "end for `window_expired`, the evaluation's time for `bulk`."
    )
    reason: MembershipReason = Field(
        description="`realtime`: an event changed the profile; `window_expired`: a time window "
        "in the rules ran out; `bulk`: the segment was created or changed and re-evaluated."
    )
    caused_by: EventId | None = Field(
        default=None, description="The ce_id of the event behind a `realtime` change."
    )


class SegmentEntered(_MembershipChange):
    """A profile now matches a segment's rules."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                _example(
                    "realtime",
                    caused_by="ajs-next-1f0c7a3e6b2d4c9e8a5f",
                    profile={
                        "traits": {"email": "li@example.com", "plan": "premium"},
                        "tags": ["vip"],
                        "lifecycle_stage": "active",
                        "scores": {"rfm": 555},
                        "top_category": "tea",
                    },
                ),
                _example("bulk", occurred_at="2025-03-14T10:00:00Z"),
            ]
        }
    )

    event_type = "segment.entered"

    profile: ProfileSnapshot | None = Field(
        default=None,
        description="The profile's facts as segment held them when it entered: the facts that "
        "made it a member. Journey enters with them, so the first message carries the traits "
        "behind the entry even when the behaviour that set them reaches journey later (the two "
        "travel on different topics). Absent on `bulk` entries.",
    )


class SegmentExited(_MembershipChange):
    """A profile no longer matches a segment's rules."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [_example("window_expired", occurred_at="2025-04-13T09:26:53Z")]
        }
    )

    event_type = "segment.exited"
