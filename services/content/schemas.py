"""The content REST API's request and response models."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from libs.common.storable import Storable

TEMPLATE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
TemplateId = Annotated[str, StringConstraints(pattern=TEMPLATE_ID_PATTERN)]
VariantId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
DefaultPath = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}(\.[A-Za-z0-9_]{1,64}){0,5}$")
]
Channel = Literal[
    "email", "sms", "push", "webhook", "wecom", "wecom_contact", "wechat", "wechat_miniprogram"
]


Source = Annotated[str, StringConstraints(max_length=100_000), Storable]
JsonSource = Annotated[dict[str, Any], Storable]


class Variant(BaseModel):
    """One variant: the channel's fields as Liquid (see docs/content.md for which channel has
    which); a JSON field's string values are Liquid too."""

    model_config = ConfigDict(extra="forbid")

    id: VariantId
    name: Annotated[str, StringConstraints(max_length=255), Storable] = ""
    subject: Source | None = Field(default=None, description="Email subject.")
    html: Source | None = Field(default=None, description="Email HTML body.")
    text: Source | None = Field(default=None, description="SMS text, or an email's text part.")
    title: Source | None = Field(default=None, description="Push, WeCom or WeChat title.")
    body: Source | None = Field(default=None, description="Push body.")
    description: Source | None = Field(default=None, description="WeCom or WeChat card text.")
    url: Source | None = Field(default=None, description="WeCom or WeChat card link.")
    data: JsonSource | None = Field(
        default=None, description="Push data, or WeCom/WeChat template-message data."
    )
    payload: JsonSource | None = Field(default=None, description="A webhook's JSON payload.")


class TemplateRequest(BaseModel):
    """A template to create (POST) or its next version (PUT)."""

    model_config = ConfigDict(extra="forbid")

    id: TemplateId | None = Field(
        default=None, description="Chosen by the caller on create; generated when absent."
    )
    name: Annotated[str, StringConstraints(min_length=1, max_length=255), Storable]
    channel: Channel
    defaults: Annotated[dict[DefaultPath, Any], Storable] = Field(
        default_factory=dict,
        max_length=200,
        description="Values used at send time when a variable is missing, by dotted path: "
        '`{"profile.traits.first_name": "there"}`.',
    )
    variants: list[Variant] = Field(min_length=1, max_length=20)
    reward: Literal["clicks", "conversions"] = Field(
        default="clicks", description="What counts as a success for the variant bandit."
    )
    holdout_share: float = Field(
        default=0.0, ge=0.0, le=0.9, description="Share of requests answered with no message."
    )
    topic: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,63}$")] | None = Field(
        default=None,
        description="The subscription topic its messages belong to (dispatch's `/topics`) when "
        "the send names none; unknown: 422.",
    )
    transactional: bool = Field(
        default=False,
        description="Its messages are transactional (receipts, password resets): dispatch never "
        "caps, arbitrates or holds them, whatever the journey's contact rule says.",
    )


class TemplateResponse(BaseModel):
    id: str
    name: str
    channel: str
    version: int
    defaults: dict[str, Any]
    variants: list[Variant]
    reward: str
    holdout_share: float
    topic: str | None = None
    transactional: bool = False
    created_at: datetime
    updated_at: datetime


class TemplateList(BaseModel):
    templates: list[TemplateResponse]


class InlineProfile(BaseModel):
    """The facts a request would carry (its `profile`): content keeps no profiles of its own."""

    model_config = ConfigDict(extra="forbid")

    traits: Annotated[dict[str, Any], Storable] = Field(default_factory=dict)
    tags: list[Annotated[str, StringConstraints(max_length=255)]] = Field(default_factory=list)
    lifecycle_stage: Annotated[str, StringConstraints(max_length=255)] | None = None
    scores: Annotated[dict[str, Any], Storable] = Field(default_factory=dict)
    top_category: Annotated[str, StringConstraints(max_length=255)] | None = None


class PreviewRequest(BaseModel):
    """Render a template strictly, for the profile facts given (none: an empty profile)."""

    model_config = ConfigDict(extra="forbid")

    profile: InlineProfile | None = None
    variables: Annotated[dict[str, Any], Storable] = Field(
        default_factory=dict, description="What a request would carry: `event`, and the rest."
    )
    variant_id: VariantId | None = Field(
        default=None, description="The variant to render; the first when absent."
    )


class PreviewResponse(BaseModel):
    template_id: str
    template_version: int
    variant_id: str
    fields: dict[str, Any] = Field(description="The variant's fields, rendered (links as written).")


class VariantStatsResponse(BaseModel):
    variant_id: str
    name: str
    trials: float = Field(description="Messages sent with this variant, discounted with age.")
    successes: float = Field(
        description="Clicked messages, or credited conversions, discounted with age."
    )
    posterior_mean: float = Field(description="The bandit's estimate of its rate, all contexts.")
    probability_best: float | None = Field(
        description="At the last evaluation, the traffic-weighted probability that it is the "
        "best variant; null before the first."
    )
    sends: float | None = Field(
        default=None, description="Messages sent with this variant, discounted with age."
    )
    clicks: float | None = Field(
        default=None, description="Its clicked messages (each once), discounted with age."
    )
    conversions: float | None = Field(
        default=None, description="Conversions credited to it (credit shares), discounted."
    )
    split: float | None = Field(
        default=None,
        description="The share of the template's requests the policy gives it now (of those "
        "not held out): each context's choice probability weighted by the context's sends.",
    )


class ExperimentResponse(BaseModel):
    """The template's experiment as last evaluated (Scott's value remaining)."""

    promoted: bool = Field(
        description="Whether the leaders are promoted: each context's leader gets all but the "
        "exploration floor of its sends."
    )
    promoted_at: datetime | None
    winner: str | None = Field(
        description="The promoted variant, when one variant leads in every context."
    )
    value_remaining: float = Field(
        description="The 95th percentile of how much better than the leaders the best variants "
        "may still be, relative to the leaders' value."
    )
    probability_optimal: float = Field(
        description="A lower bound on the probability that every context's leader is its best."
    )
    probability_best: dict[str, float]
    leaders: dict[str, str] = Field(description="Context key -> its leading variant.")
    evaluated_at: datetime


class VariantsResponse(BaseModel):
    template_id: str
    version: int
    reward: str
    holdout_share: float
    variants: list[VariantStatsResponse]
    experiment: ExperimentResponse | None = Field(
        description="The experiment as last evaluated; null before the first evaluation."
    )
    decisions: dict[str, int] = Field(
        description="Requests answered, by outcome: rendered, holdout, undeliverable."
    )


class InsightResponse(BaseModel):
    id: int
    template_id: str
    kind: Literal["variant_promoted", "promotion_lifted"]
    message: str
    evidence: dict[str, Any] = Field(description="The figures the insight is drawn from.")
    created_at: datetime


class InsightsResponse(BaseModel):
    insights: list[InsightResponse]


class EvaluationResponse(BaseModel):
    experiment: ExperimentResponse
    insight: InsightResponse | None = Field(
        description="What this evaluation changed: a promotion or a lift; null when nothing."
    )


class SuggestionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    channel: Literal["email", "sms", "push", "wecom", "wechat"]
    brief: Annotated[str, StringConstraints(min_length=1, max_length=4000), Storable]
    count: int = Field(default=3, ge=1, le=10)


class SuggestionResponse(BaseModel):
    source: Literal["llm", "offline"]
    suggestions: list[dict[str, Any]] = Field(
        description="`fields` (Liquid, ready for a variant) and a `rationale`."
    )
    note: str | None = Field(default=None, description="Why the offline method answered.")
