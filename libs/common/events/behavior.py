"""behavior.v1: what people did, resolved to their profile: what segments and journeys react to."""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field

from libs.common import topics
from libs.common.events.envelope import EventData
from libs.common.events.fields import EventId, EventTime, ExternalId, Name, ProfileId, Properties
from libs.common.events.profile import ProfileChange

BehaviorKind = Literal["track", "page", "screen", "identify", "group"]


class BehaviorOccurred(EventData):
    """A client's call, resolved to the profile it belongs to."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "profile_id": "prf_01JPB6W3K8N2X4Q7R9T0V5Y1ZC",
                    "event": "order_completed",
                    "kind": "track",
                    "properties": {
                        "order_id": "SO-20250314-0042",
                        "revenue": 129.9,
                        "currency": "CNY",
                    },
                    "context": {"locale": "zh-CN", "timezone": "Asia/Shanghai"},
                    "occurred_at": "2025-03-14T09:26:53.120Z",
                    "received_at": "2025-03-14T09:26:53.871Z",
                    "user_id": "u_48213",
                    "anonymous_id": "6f1c1a7e-3b8e-4a43-9f4f-1d3c9e210b6e",
                    "message_id": "ajs-next-1f0c7a3e6b2d4c9e8a5f",
                    "profile_changes": [
                        {"field": "scores.rfm", "before": 312, "after": 455},
                        {"field": "lifecycle_stage", "before": "at_risk", "after": "active"},
                    ],
                },
                {
                    "profile_id": "prf_01JPB6W3K8N2X4Q7R9T0V5Y1ZC",
                    "event": "Oolong Tea 250g",
                    "kind": "page",
                    "properties": {"path": "/p/tea-oolong-250g"},
                    "occurred_at": "2025-03-14T09:21:07.400Z",
                    "received_at": "2025-03-14T09:21:07.911Z",
                    "anonymous_id": "6f1c1a7e-3b8e-4a43-9f4f-1d3c9e210b6e",
                    "message_id": "ajs-next-5d4c3b2a1f0e4d9c8b7a",
                },
            ]
        }
    )

    event_type = "behavior.occurred"
    topic = topics.BEHAVIOR

    profile_id: ProfileId = Field(description="The profile the call was resolved to.")
    event: Name = Field(
        description="What happened: the track call's event name, the page or screen name, or "
        "the kind itself (`page`, `screen`, `identify`, `group`) when the call has no name."
    )
    kind: BehaviorKind = Field(description="The Segment call this behaviour came from.")
    properties: Properties = Field(
        default_factory=dict,
        description="The call's properties; for identify and group, the traits it carried.",
    )
    context: Properties = Field(
        default_factory=dict, description="The call's Segment context, unchanged."
    )
    occurred_at: EventTime = Field(
        description="Event time: when it happened on the client (the call's timestamp)."
    )
    received_at: EventTime = Field(description="When ingest received the call.")
    user_id: ExternalId | None = Field(default=None, description="The call's userId.")
    anonymous_id: ExternalId | None = Field(default=None, description="The call's anonymousId.")
    message_id: EventId = Field(
        description="The originating call's messageId, which is also the ingest event's ce_id."
    )
    profile_changes: list[ProfileChange] = Field(
        default_factory=list,
        description="What this call changed about the profile (its traits, tags, lifecycle "
        "stage, scores, top categories), as `profile.updated` would say it: a change a call "
        "causes travels with the call's behaviour, and no `profile.updated` is sent for it.",
    )


class BehaviorIdentifiedChunk(EventData):
    """The identify rows of one import chunk, resolved to their profiles: one event for many.

    Each row is what `behavior.occurred` would have said of it, its `profile_changes`
    included. Every row's profile id hashes to the partition the chunk is on, so a person's
    behaviours stay on one partition, in order.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "rows": [
                        {
                            "profile_id": "prf_01JPB6W3K8N2X4Q7R9T0V5Y1ZC",
                            "event": "identify",
                            "kind": "identify",
                            "properties": {"email": "zhang.min@example.com", "plan": "premium"},
                            "occurred_at": "2025-03-14T10:02:11.004Z",
                            "received_at": "2025-03-14T10:02:11.004Z",
                            "user_id": "u_90417",
                            "message_id": "import-7c1d0e9a2b3f4c5d6e7f8a9b0c1d2e3f4a5b6c7d",
                            "profile_changes": [
                                {
                                    "field": "traits.email",
                                    "before": None,
                                    "after": "zhang.min@example.com",
                                },
                                {"field": "traits.plan", "before": None, "after": "premium"},
                            ],
                        }
                    ]
                }
            ]
        }
    )

    event_type = "behavior.identified_chunk"
    topic = topics.BEHAVIOR

    rows: list[BehaviorOccurred] = Field(
        min_length=1,
        description="One `behavior.occurred` per identify row, in the order profile took them.",
    )
