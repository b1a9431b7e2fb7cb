"""The segment REST API's request and response models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from libs.common.storable import Storable

SEGMENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
SegmentId = Annotated[str, StringConstraints(pattern=SEGMENT_ID_PATTERN)]


class SegmentRequest(BaseModel):
    """A segment to create (POST) or its new definition (PUT)."""

    model_config = ConfigDict(extra="forbid")

    id: SegmentId | None = Field(
        default=None, description="Chosen by the caller on create; generated when absent."
    )
    name: Annotated[str, StringConstraints(min_length=1, max_length=255), Storable]
    description: Annotated[str, Storable] = ""
    conditions: Annotated[Any, Storable] = Field(
        description="The condition tree: `all` / `any` / `not` over trait, tag, lifecycle_stage, "
        "score, in_segment and event conditions (see docs/segment.md)."
    )


class PreviewRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    conditions: Annotated[Any, Storable]
    sample_size: int = Field(
        default=0, ge=0, le=100, description="How many matching profile ids to return as well."
    )


class Evaluation(BaseModel):
    """What the bulk evaluation of a new or changed definition did."""

    entered: int
    exited: int


class SegmentResponse(BaseModel):
    id: str
    name: str
    description: str
    version: int
    conditions: Any
    created_at: datetime
    updated_at: datetime
    evaluation: Evaluation | None = Field(
        default=None, description="Set when this request evaluated the segment over all profiles."
    )


class SegmentList(BaseModel):
    segments: list[SegmentResponse]


class MemberResponse(BaseModel):
    profile_id: str
    segment_version: int
    entered_at: datetime


class MembersPage(BaseModel):
    members: list[MemberResponse]
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page."
    )


EventName = Annotated[str, StringConstraints(min_length=1, max_length=255), Storable]


class BehaviourRow(BaseModel):
    profile_id: str
    event: str
    occurred_at: datetime
    properties: dict[str, Any]


class BehavioursPage(BaseModel):
    behaviours: list[BehaviourRow] = Field(description="Oldest first.")
    truncated: bool = Field(description="More behaviours matched than `limit`.")


class PreviewResponse(BaseModel):
    count: int = Field(description="Profiles that match the definition now.")
    sample: list[str] = Field(
        default_factory=list,
        description="Up to `sample_size` of them, in profile id order.",
    )
    evaluated_at: datetime
