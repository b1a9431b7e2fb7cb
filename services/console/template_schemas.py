"""What the template editor's JSON routes take and answer (its forms are `template_drafts`)."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

TEMPLATE_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
VariantId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]


class TemplatePreviewRequest(BaseModel):
    """Render the saved template's variant for a person, found by id or identifier."""

    model_config = ConfigDict(extra="forbid")

    profile: Annotated[str, StringConstraints(max_length=512)] = Field(
        description="`prf_…`, an email, `type:value`, or a user id."
    )
    variant_id: VariantId | None = None
    variables: dict[str, Any] = Field(
        default_factory=dict, description="What a request would carry besides the profile."
    )


class SmsLengthAnswer(BaseModel):
    encoding: Literal["GSM-7", "UCS-2"]
    characters: int
    segments: int
    per_segment: int


class TemplatePreviewAnswer(BaseModel):
    template_id: str
    template_version: int
    variant_id: str
    channel: str
    profile_id: str
    fields: dict[str, Any] = Field(description="The variant's fields, rendered for the person.")
    sms: SmsLengthAnswer | None = Field(description="An SMS's length and messages; else null.")


class SuggestionRequest(BaseModel):
    """A brief to write copy for, on a channel."""

    model_config = ConfigDict(extra="forbid")

    channel: Literal["email", "sms", "push", "wecom", "wechat"]
    brief: Annotated[str, StringConstraints(min_length=1, max_length=4000)]
    count: int = Field(default=3, ge=1, le=5)


class Suggestion(BaseModel):
    fields: dict[str, Any]
    rationale: str | None = None


class SuggestionAnswer(BaseModel):
    source: str = Field(description="`llm` (the configured model) or `offline`.")
    suggestions: list[Suggestion]
    note: str | None = None
