"""What the console's JSON routes take and answer, and the forms its pages post."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from libs.common.errors import ApiError

SEGMENT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
SegmentId = Annotated[str, StringConstraints(pattern=SEGMENT_ID_PATTERN)]
PREVIEW_SAMPLE_SIZE: Final = 10
_MAX_NAME: Final = 255
_MAX_DESCRIPTION: Final = 10_000


class PreviewRequest(BaseModel):
    """The segment builder's rule as it stands, to count."""

    model_config = ConfigDict(extra="forbid")

    conditions: Any


class PreviewAnswer(BaseModel):
    count: int = Field(description="Profiles that match the rule now.")
    sample: list[str] = Field(description="Some of them, in profile id order.")
    evaluated_at: datetime


@dataclass(frozen=True)
class SegmentForm:
    """The segment builder's form: name, description and the rule as JSON."""

    name: str
    description: str
    conditions_json: str

    @classmethod
    def of(cls, fields: dict[str, str]) -> SegmentForm:
        return cls(
            name=fields.get("name", "").strip(),
            description=fields.get("description", "").strip(),
            conditions_json=fields.get("conditions", ""),
        )

    def checked(self) -> tuple[str, str, Any]:
        """Name, description and conditions; ApiError 422 naming the field that is wrong."""
        if not self.name:
            raise ApiError(422, "invalid_request", "name: a segment needs a name", "name")
        if len(self.name) > _MAX_NAME:
            raise ApiError(422, "invalid_request", f"name: at most {_MAX_NAME} characters", "name")
        if len(self.description) > _MAX_DESCRIPTION:
            raise ApiError(
                422,
                "invalid_request",
                f"description: at most {_MAX_DESCRIPTION} characters",
                "description",
            )
        try:
            conditions = json.loads(self.conditions_json)
        except ValueError:
            raise ApiError(
                422, "invalid_request", "conditions: not a rule (JSON expected)", "conditions"
            ) from None
        return self.name, self.description, conditions


JOURNEY_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
_NODE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
_MAX_NODES: Final = 500
_FARTHEST: Final = 1_000_000.0


class JourneyDefinition(BaseModel):
    """The journey's graph as the canvas made it; the journey service judges it."""

    model_config = ConfigDict(extra="forbid")

    entry: Any = None
    reentry: Any = None
    exit: Any = None
    goal: Any = None
    start: Any = None
    nodes: Any = None

    def graph(self) -> dict[str, Any]:
        return {name: value for name, value in self.model_dump().items() if value is not None}


class Position(BaseModel):
    model_config = ConfigDict(extra="forbid")

    x: float = Field(ge=-_FARTHEST, le=_FARTHEST, allow_inf_nan=False)
    y: float = Field(ge=-_FARTHEST, le=_FARTHEST, allow_inf_nan=False)


class JourneyLayout(BaseModel):
    """Where the canvas draws the entry and each node (decision 0028: the console keeps it)."""

    model_config = ConfigDict(extra="forbid")

    entry: Position | None = None
    nodes: Annotated[
        dict[Annotated[str, StringConstraints(pattern=_NODE_ID_PATTERN)], Position],
        Field(max_length=_MAX_NODES),
    ] = Field(default_factory=dict)


class JourneyDraft(BaseModel):
    """What the canvas saves: the journey's name and description, its graph, its layout."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=255)]
    description: Annotated[str, StringConstraints(max_length=_MAX_DESCRIPTION)] = ""
    definition: JourneyDefinition
    layout: JourneyLayout = Field(default_factory=JourneyLayout)


class JourneyCheck(BaseModel):
    """The graph as the canvas has it now, to validate without saving."""

    model_config = ConfigDict(extra="forbid")

    definition: JourneyDefinition
