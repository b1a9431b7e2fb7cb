"""ingest.v1: the Segment-spec calls ingest accepted, in Segment's own JSON names."""

from __future__ import annotations

from typing import Any, ClassVar, Self

from pydantic import AwareDatetime, ConfigDict, Field, model_validator

from libs.common import topics
from libs.common.events.envelope import EventData
from libs.common.events.fields import EntityId, EventId, EventTime, ExternalId, Name, Properties

_CONTEXT = {
    "ip": "203.0.113.24",
    "locale": "zh-CN",
    "timezone": "Asia/Shanghai",
    "userAgent": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15",
    "library": {"name": "analytics.js", "version": "5.2.0"},
}
_TIMES = {
    "timestamp": "2025-03-14T09:26:53.120Z",
    "sentAt": "2025-03-14T09:26:53.500Z",
    "receivedAt": "2025-03-14T09:26:53.871Z",
}
# Segment requires one of the two ids on every call but alias, which requires userId.
_IDENTIFIED: dict[str, Any] = {"anyOf": [{"required": ["userId"]}, {"required": ["anonymousId"]}]}


def _extra(*examples: dict[str, Any]) -> dict[str, Any]:
    return {**_IDENTIFIED, "examples": list(examples)}


class SegmentCall(EventData):
    """What every Segment call carries once ingest has accepted it."""

    model_config = ConfigDict(
        validate_by_name=True, validate_by_alias=True, serialize_by_alias=True
    )

    topic: ClassVar[str] = topics.INGEST

    message_id: EventId = Field(
        alias="messageId",
        description="The client's id for this call; it becomes the ce_id of the event, so a "
        "client's retry is a duplicate everyone downstream recognises. Ingest assigns one when "
        "the client sends none.",
    )
    source_id: EntityId = Field(
        alias="sourceId", description="The source whose write key accepted the call."
    )
    user_id: ExternalId | None = Field(
        default=None, alias="userId", description="The client's id of a known user."
    )
    anonymous_id: ExternalId | None = Field(
        default=None,
        alias="anonymousId",
        description="The client's id of a visitor before they are known (a device or cookie id).",
    )
    timestamp: EventTime = Field(
        description="When the call happened on the client, corrected for the client's clock "
        "skew with sentAt and receivedAt: the event time windows use."
    )
    sent_at: AwareDatetime | None = Field(
        default=None, alias="sentAt", description="When the client sent the call, by its clock."
    )
    received_at: EventTime = Field(
        alias="receivedAt", description="When ingest received the call, by ingest's clock."
    )
    context: Properties = Field(
        default_factory=dict,
        description="Segment's context: ip, locale, timezone, userAgent, library, campaign, page…",
    )
    integrations: Properties = Field(
        default_factory=dict,
        description="Segment's per-destination switches, passed through unchanged.",
    )

    @model_validator(mode="after")
    def _identified(self) -> Self:
        if self.user_id is None and self.anonymous_id is None:
            raise ValueError("a call needs userId or anonymousId")
        return self


class IngestTrack(SegmentCall):
    """A `track` call: the user did something."""

    model_config = ConfigDict(
        json_schema_extra=_extra(
            {
                "messageId": "ajs-next-1f0c7a3e6b2d4c9e8a5f",
                "sourceId": "src_storefront_web",
                "userId": "u_48213",
                "anonymousId": "6f1c1a7e-3b8e-4a43-9f4f-1d3c9e210b6e",
                "event": "order_completed",
                "properties": {
                    "order_id": "SO-20250314-0042",
                    "revenue": 129.9,
                    "currency": "CNY",
                    "products": [{"sku": "TEA-OOLONG-250G", "quantity": 2, "price": 64.95}],
                },
                "context": _CONTEXT,
                **_TIMES,
            }
        )
    )

    event_type = "ingest.track"

    event: Name = Field(description="What the user did, e.g. `order_completed`.")
    properties: Properties = Field(
        default_factory=dict, description="The event's properties, as the client sent them."
    )


class IngestIdentify(SegmentCall):
    """An `identify` call: who the user is and their traits. A profile-traits import row is one.

    An import's identify rows travel together, as the rows of an `ingest.identify_chunk`.
    """

    model_config = ConfigDict(
        json_schema_extra=_extra(
            {
                "messageId": "ajs-next-9b3e2d1c0a8f4e7d6c5b",
                "sourceId": "src_storefront_web",
                "userId": "u_48213",
                "anonymousId": "6f1c1a7e-3b8e-4a43-9f4f-1d3c9e210b6e",
                "traits": {
                    "email": "li.wei@example.com",
                    "name": "Li Wei",
                    "plan": "premium",
                    "city": "Hangzhou",
                },
                "context": _CONTEXT,
                **_TIMES,
            },
            {
                "messageId": "import-7c1d-000001",
                "sourceId": "src_crm_import",
                "userId": "u_90417",
                "traits": {"email": "zhang.min@example.com", "lifecycle_stage": "customer"},
                "timestamp": "2025-03-01T00:00:00Z",
                "receivedAt": "2025-03-14T10:02:11.004Z",
            },
        )
    )

    event_type = "ingest.identify"

    traits: Properties = Field(
        default_factory=dict, description="Traits of the user, as the client sent them."
    )


class IngestPage(SegmentCall):
    """A `page` call: the user viewed a web page."""

    model_config = ConfigDict(
        json_schema_extra=_extra(
            {
                "messageId": "ajs-next-5d4c3b2a1f0e4d9c8b7a",
                "sourceId": "src_storefront_web",
                "anonymousId": "6f1c1a7e-3b8e-4a43-9f4f-1d3c9e210b6e",
                "name": "Oolong Tea 250g",
                "category": "product",
                "properties": {
                    "url": "https://shop.example.com/p/tea-oolong-250g",
                    "path": "/p/tea-oolong-250g",
                    "referrer": "https://www.baidu.com/",
                    "title": "Oolong Tea 250g",
                },
                "context": _CONTEXT,
                **_TIMES,
            }
        )
    )

    event_type = "ingest.page"

    name: Name | None = Field(default=None, description="The page's name.")
    category: Name | None = Field(default=None, description="The page's category.")
    properties: Properties = Field(
        default_factory=dict, description="The page's properties: url, path, referrer, title…"
    )


class IngestScreen(SegmentCall):
    """A `screen` call: the user viewed a screen of a mobile app."""

    model_config = ConfigDict(
        json_schema_extra=_extra(
            {
                "messageId": "ios-3a2b1c0d-9e8f-4a7b-8c6d-5e4f3a2b1c0d",
                "sourceId": "src_ios_app",
                "userId": "u_48213",
                "name": "Cart",
                "category": "checkout",
                "properties": {"item_count": 2},
                "context": {
                    "app": {"name": "Teahouse", "version": "3.8.1"},
                    "device": {"manufacturer": "Apple", "model": "iPhone15,2"},
                    "locale": "zh-CN",
                },
                **_TIMES,
            }
        )
    )

    event_type = "ingest.screen"

    name: Name | None = Field(default=None, description="The screen's name.")
    category: Name | None = Field(default=None, description="The screen's category.")
    properties: Properties = Field(
        default_factory=dict, description="The screen's properties, as the client sent them."
    )


class IngestGroup(SegmentCall):
    """A `group` call: the user belongs to a group, e.g. a company account."""

    model_config = ConfigDict(
        json_schema_extra=_extra(
            {
                "messageId": "ajs-next-0e9d8c7b6a5f4e3d2c1b",
                "sourceId": "src_storefront_web",
                "userId": "u_48213",
                "groupId": "org_3391",
                "traits": {"name": "West Lake Tea Co.", "industry": "retail", "employees": 40},
                **_TIMES,
            }
        )
    )

    event_type = "ingest.group"

    group_id: ExternalId = Field(alias="groupId", description="The client's id of the group.")
    traits: Properties = Field(
        default_factory=dict, description="Traits of the group, as the client sent them."
    )


class IngestAlias(SegmentCall):
    """An `alias` call: two of the client's user ids are one person."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "messageId": "srv-alias-2c7e9a41",
                    "sourceId": "src_backend",
                    "userId": "u_48213",
                    "previousId": "wx_oF3kD2aQ9",
                    **_TIMES,
                }
            ]
        }
    )

    event_type = "ingest.alias"

    user_id: ExternalId = Field(alias="userId", description="The id the user is known by now.")
    previous_id: ExternalId = Field(
        alias="previousId", description="The id the user was known by before."
    )


class IngestIdentifyChunk(EventData):
    """Identify rows of one bulk import, gathered by the partition their keys go to.

    Every row's key (userId, else anonymousId) hashes to the partition the chunk is on, so a
    person's events stay on one partition, in order. Each row keeps its own messageId: profile
    claims the rows one by one, so a row imported twice is a known duplicate, chunked or not.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "rows": [
                        {
                            "messageId": "import-7c1d0e9a2b3f4c5d6e7f8a9b0c1d2e3f4a5b6c7d",
                            "sourceId": "src_crm_import",
                            "userId": "u_90417",
                            "traits": {"email": "zhang.min@example.com", "plan": "premium"},
                            "timestamp": "2025-03-14T10:02:11.004Z",
                            "receivedAt": "2025-03-14T10:02:11.004Z",
                        },
                        {
                            "messageId": "import-0e9a2b3f4c5d6e7f8a9b0c1d2e3f4a5b6c7d7c1d",
                            "sourceId": "src_crm_import",
                            "userId": "u_90533",
                            "traits": {"email": "wang.fang@example.com", "plan": "free"},
                            "timestamp": "2025-03-14T10:02:11.004Z",
                            "receivedAt": "2025-03-14T10:02:11.004Z",
                        },
                    ]
                }
            ]
        }
    )

    event_type = "ingest.identify_chunk"
    topic = topics.INGEST

    rows: list[IngestIdentify] = Field(
        min_length=1,
        description="The import's identify calls, in the file's order, each as `ingest.identify` "
        "carries it.",
    )
