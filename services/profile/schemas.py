"""REST response models of the profile service."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from services.profile.features import LifecycleStage


class RfmScores(BaseModel):
    rfm: int = Field(description="Recency, frequency and monetary scores as one number, e.g. 455.")
    recency: int = Field(ge=1, le=5)
    frequency: int = Field(ge=1, le=5)
    monetary: int = Field(ge=1, le=5)


class Engagement(BaseModel):
    """What became of the messages sent to the person, and the conversions credited to them."""

    by_channel: dict[str, dict[str, int]] = Field(
        description="Channel -> outcome (sent, delivered, opened, clicked, …) -> count."
    )
    last_engaged_at: datetime | None = Field(description="The last open or click.")
    attributed_conversions: float = Field(description="Conversion credit shares, summed.")
    attributed_revenue: dict[str, float] = Field(
        description="Currency -> conversion value credited to messages sent to the person."
    )


class ProfileOut(BaseModel):
    """A person as the profile service knows them; computed features are as of the request."""

    id: str
    created_at: datetime
    first_seen: datetime | None
    last_seen: datetime | None
    identifiers: list[str] = Field(description="`<type>:<value>`: user_id, anonymous_id, email…")
    traits: dict[str, Any]
    tags: list[str]
    counters: dict[str, int] = Field(description="Events seen, by event name.")
    lifecycle_stage: LifecycleStage | None
    scores: RfmScores | None = Field(description="Absent until the first order.")
    orders: int
    revenue: float
    top_categories: list[str]
    category_scores: dict[str, float] = Field(description="Decayed interest, as of now.")
    segments: dict[str, int] = Field(description="Segment id -> version the profile is in.")
    engagement: Engagement


class ProfileList(BaseModel):
    profiles: list[ProfileOut]


class ProfileEventOut(BaseModel):
    seq: int
    message_id: str
    event: str
    kind: str
    occurred_at: datetime
    properties: dict[str, Any]


class ProfileEventPage(BaseModel):
    events: list[ProfileEventOut] = Field(description="Newest first.")
    next_before: int | None = Field(
        description="Pass as `before` for the next (older) page; null on the last page."
    )


class ErasureAccepted(BaseModel):
    erasure_request_id: str
    profile_id: str
