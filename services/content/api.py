"""The content REST API: templates (CRUD, every change a new version), previews, the variant
experiment (the bandit's view of the variants, evaluations, insights), and copy suggestions."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from libs.common.api import StoreTransactions, from_state, state_of, transactions_of
from libs.common.auth import require_admin
from libs.common.errors import MANAGEMENT_ERRORS, ApiError, error_responses
from libs.common.profiles import ProfileFacts
from services.content import metrics
from services.content.copywriting import (
    CopywriterUnavailable,
    LlmCopywriter,
    ranked_variants,
    recombine,
)
from services.content.evaluations import ExperimentEvaluations, NothingToEvaluate
from services.content.experiments import (
    Experiment,
    current_split,
    template_variants,
    variant_evidence,
    variant_rates,
)
from services.content.messages import template_variables
from services.content.profiles import profile_variable
from services.content.sandbox import (
    MissingVariable,
    RenderError,
    RenderJob,
    RenderSandbox,
)
from services.content.schemas import (
    TEMPLATE_ID_PATTERN,
    EvaluationResponse,
    ExperimentResponse,
    InsightResponse,
    InsightsResponse,
    PreviewRequest,
    PreviewResponse,
    SuggestionRequest,
    SuggestionResponse,
    TemplateId,
    TemplateList,
    TemplateRequest,
    TemplateResponse,
    VariantsResponse,
    VariantStatsResponse,
)
from services.content.settings import ContentSettings
from services.content.store import ContentStore, StoredInsight, TemplateContent, TemplateRow
from services.content.subscription_topics import DispatchTopics, TopicsUnavailable
from services.content.templates import assemble, field_problems, liquid_sources

_T = TypeVar("_T")
TemplateIdPath = Annotated[str, Path(pattern=TEMPLATE_ID_PATTERN)]
_NOT_FOUND = error_responses(404)


templates_router = APIRouter(
    prefix="/templates",
    tags=["templates"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)
insights_router = APIRouter(
    prefix="/insights",
    tags=["insights"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)
copy_router = APIRouter(
    prefix="/copy",
    tags=["copy"],
    dependencies=[Depends(require_admin)],
    responses=MANAGEMENT_ERRORS,
)
Stores = Annotated[StoreTransactions[ContentStore], Depends(transactions_of(ContentStore))]
SettingsDep = Annotated[ContentSettings, Depends(from_state("settings", ContentSettings))]
SandboxDep = Annotated[RenderSandbox, Depends(from_state("sandbox", RenderSandbox))]
TopicsDep = Annotated[DispatchTopics, Depends(from_state("topics", DispatchTopics))]
EvaluationsDep = Annotated[
    ExperimentEvaluations, Depends(from_state("evaluations", ExperimentEvaluations))
]


async def _copywriter(request: Request) -> LlmCopywriter | None:
    """The configured model's copywriter (`app.state.copywriter`), None when there is none."""
    copywriter = request.app.state.copywriter
    return None if copywriter is None else state_of(request, "copywriter", LlmCopywriter)


CopywriterDep = Annotated[LlmCopywriter | None, Depends(_copywriter)]


@templates_router.post("", status_code=201, responses=error_responses(409))
async def create_template(
    request: TemplateRequest, stores: Stores, sandbox: SandboxDep, topics: TopicsDep
) -> TemplateResponse:
    """Create a template at version 1."""
    template_id = request.id or f"tpl_{uuid.uuid4().hex[:20]}"
    content = await _checked(request, sandbox)
    await _check_topic(request.topic, topics)
    async with stores() as store:
        row = await store.insert_template(template_id, content)
    if row is None:
        raise ApiError(409, "template_exists", f"Template {template_id!r} already exists.", "id")
    return _response(row)


@templates_router.get("")
async def list_templates(stores: Stores) -> TemplateList:
    async with stores() as store:
        rows = await store.list_templates()
    return TemplateList(templates=[_response(row) for row in rows])


@templates_router.get("/{template_id}", responses=_NOT_FOUND)
async def get_template(template_id: TemplateIdPath, stores: Stores) -> TemplateResponse:
    async with stores() as store:
        row = await store.get_template(template_id)
    return _response(_found(row, template_id))


@templates_router.put("/{template_id}", responses=_NOT_FOUND)
async def replace_template(
    template_id: TemplateIdPath,
    request: TemplateRequest,
    stores: Stores,
    sandbox: SandboxDep,
    topics: TopicsDep,
) -> TemplateResponse:
    """Save the template as its next version; messages name the version they came from."""
    if request.id is not None and request.id != template_id:
        raise ApiError(422, "id_mismatch", "The body's id differs from the path's.", "id")
    content = await _checked(request, sandbox)
    await _check_topic(request.topic, topics)
    async with stores() as store:
        row = await store.add_version(template_id, content)
    return _response(_found(row, template_id))


@templates_router.delete("/{template_id}", status_code=204, responses=_NOT_FOUND)
async def delete_template(template_id: TemplateIdPath, stores: Stores) -> Response:
    async with stores() as store:
        deleted = await store.delete_template(template_id)
    if not deleted:
        _found(None, template_id)
    return Response(status_code=204)


@templates_router.post("/{template_id}/preview", responses=_NOT_FOUND)
async def preview(
    template_id: TemplateIdPath, request: PreviewRequest, stores: Stores, sandbox: SandboxDep
) -> PreviewResponse:
    """Render strictly: a variable nobody defined is a 422 naming it."""
    async with stores() as store:
        row = _found(await store.get_template(template_id), template_id)
    variant = _variant(row, request.variant_id)
    variables = template_variables(
        request.variables,
        profile=profile_variable(_preview_profile(request)),
        journey=None,
        unsubscribe_url="https://unsubscribe.example/preview",
    )
    html = frozenset({"html"}) if row.channel == "email" else frozenset()
    try:
        rendered = await sandbox.render(
            RenderJob(liquid_sources(variant), variables, strict=True, html_fields=html)
        )
    except MissingVariable as error:
        raise ApiError(
            422,
            "missing_variable",
            f"The template uses {error.variable}, which is not defined "
            f"(variant {variant['id']!r}, {error.field}).",
            error.variable,
        ) from None
    except RenderError as error:
        raise ApiError(422, "render_failed", str(error), error.field) from None
    return PreviewResponse(
        template_id=row.id,
        template_version=row.version,
        variant_id=variant["id"],
        fields=assemble(variant, rendered.fields),
    )


@templates_router.get("/{template_id}/variants", responses=_NOT_FOUND)
async def variants(
    template_id: TemplateIdPath, stores: Stores, evaluations: EvaluationsDep
) -> VariantsResponse:
    """Each variant's evidence and posterior mean as of now, its sends, clicks and conversions,
    the share of requests the policy gives it now, and the experiment as last evaluated: the
    promotion, the value remaining, each variant's probability of being best."""
    async with stores() as store:
        row = _found(await store.get_template(template_id), template_id)
        evidence = (await store.evidence([row.id])).get(row.id, [])
        experiment = await store.experiment(row.id)
        decisions = await store.outcome_counts(row.id)
    template, now = row.current(), datetime.now(UTC)
    half_life = evaluations.half_life_days
    found = variant_evidence(template, evidence, now, half_life)
    rates = variant_rates(template, evidence, now, half_life)
    split = await asyncio.to_thread(current_split, template, evidence, experiment, now, half_life)
    best = experiment.probability_best if experiment is not None else {}
    return VariantsResponse(
        template_id=row.id,
        version=row.version,
        reward=row.reward,
        holdout_share=row.holdout_share,
        variants=[
            VariantStatsResponse(
                variant_id=summary.variant_id,
                name=variant.get("name", ""),
                trials=summary.trials,
                successes=summary.successes,
                posterior_mean=summary.posterior_mean,
                probability_best=best.get(summary.variant_id),
                sends=rate.sends,
                clicks=rate.clicks,
                conversions=rate.conversions,
                split=split[summary.variant_id],
            )
            for variant, summary, rate in zip(row.variants, found, rates, strict=True)
        ],
        experiment=(
            _experiment(experiment, template_variants(template)) if experiment is not None else None
        ),
        decisions=decisions,
    )


@templates_router.post("/{template_id}/evaluate", responses=error_responses(404, 422))
async def evaluate(template_id: TemplateIdPath, evaluations: EvaluationsDep) -> EvaluationResponse:
    """Evaluate the experiment now, as the hourly evaluation does: promote its leaders when
    it has ended, lift their promotion when it has reopened."""
    try:
        evaluated = await evaluations.evaluate_now(template_id)
    except NothingToEvaluate as error:
        raise ApiError(422, "single_variant", str(error)) from None
    found = _found(evaluated, template_id)
    experiment = found.experiment
    return EvaluationResponse(
        experiment=_experiment(experiment, experiment.variants),
        insight=_insight(found.insight) if found.insight is not None else None,
    )


@insights_router.get("")
async def list_insights(
    template_id: TemplateId | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    *,
    stores: Stores,
) -> InsightsResponse:
    """What the variant experiments' evaluations changed (promotions and their lifts),
    newest first."""
    async with stores() as store:
        found = await store.insights(template_id, limit)
    return InsightsResponse(insights=[_insight(stored) for stored in found])


@copy_router.post("/suggestions")
async def suggestions(
    request: SuggestionRequest,
    stores: Stores,
    settings: SettingsDep,
    copywriter: CopywriterDep,
) -> SuggestionResponse:
    """Copy for a brief: from the configured model, else recombined from the best variants."""
    note = None
    if copywriter is not None:
        try:
            found = await copywriter.suggest(request.channel, request.brief, request.count)
        except CopywriterUnavailable as error:
            note = f"The model was not usable ({error}); the offline method answered."
        else:
            metrics.COPY_SUGGESTIONS.labels("llm").inc()
            return SuggestionResponse(
                source="llm",
                suggestions=[{"fields": s.fields, "rationale": s.rationale} for s in found],
            )
    async with stores() as store:
        rows = [row for row in await store.list_templates() if row.channel == request.channel]
        evidence = await store.evidence([row.id for row in rows])
    templates = [row.current() for row in rows]
    ranked = ranked_variants(
        templates, evidence, datetime.now(UTC), settings.content_evidence_half_life_days
    )
    found = recombine(ranked, request.channel, request.brief, request.count)
    metrics.COPY_SUGGESTIONS.labels("offline").inc()
    return SuggestionResponse(
        source="offline",
        suggestions=[{"fields": s.fields, "rationale": s.rationale} for s in found],
        note=note or ("No model is configured (CLOSELOOP_CONTENT_LLM_BASE_URL)."),
    )


async def _checked(request: TemplateRequest, sandbox: RenderSandbox) -> TemplateContent:
    """The request as a version's content, once every variant suits the channel and parses
    (in the sandbox: some sources take seconds to parse)."""
    seen: set[str] = set()
    variants: list[dict[str, Any]] = []
    for index, model in enumerate(request.variants):
        if model.id in seen:
            raise ApiError(
                422,
                "duplicate_variant",
                f"Variant id {model.id!r} is used twice.",
                f"variants.{index}.id",
            )
        seen.add(model.id)
        variant = model.model_dump(exclude_none=True)
        for name, problem in field_problems(request.channel, variant):
            raise _invalid_variant(index, name, problem)
        try:
            syntax_errors = await sandbox.syntax_errors(liquid_sources(variant))
        except RenderError as error:
            raise ApiError(
                422, "invalid_variant", f"variants.{index}: {error}", f"variants.{index}"
            ) from None
        for pointer, problem in syntax_errors.items():
            raise _invalid_variant(index, pointer, problem)
        variants.append(variant)
    return TemplateContent(
        request.name,
        request.channel,
        dict(request.defaults),
        variants,
        request.reward,
        request.holdout_share,
        request.topic,
        request.transactional,
    )


async def _check_topic(topic: str | None, topics: DispatchTopics) -> None:
    """A 422 naming `topic` when dispatch has no such topic; a 503 when it cannot say."""
    if topic is None:
        return
    try:
        exists = await topics.exists(topic)
    except TopicsUnavailable as error:
        raise ApiError(
            503,
            "dependency_unavailable",
            f"the dispatch service is unavailable: {error}",
            "dispatch",
        ) from None
    if not exists:
        raise ApiError(422, "topic_not_found", f"topic: there is no topic {topic!r}", "topic")


def _invalid_variant(index: int, pointer: str, problem: str) -> ApiError:
    return ApiError(
        422,
        "invalid_variant",
        f"variants.{index}.{pointer}: {problem}",
        f"variants.{index}.{pointer.replace('/', '.')}",
    )


def _preview_profile(request: PreviewRequest) -> ProfileFacts:
    inline = request.profile
    if inline is None:
        return ProfileFacts("preview")
    return ProfileFacts(
        "preview",
        dict(inline.traits),
        list(inline.tags),
        inline.lifecycle_stage,
        dict(inline.scores),
        inline.top_category,
    )


def _variant(row: TemplateRow, variant_id: str | None) -> dict[str, Any]:
    if variant_id is None:
        return row.variants[0]
    variant = row.current().variant(variant_id)
    if variant is None:
        raise ApiError(
            404,
            "variant_not_found",
            f"Template {row.id!r} has no variant {variant_id!r}.",
            "variant_id",
        )
    return variant


def _found(value: _T | None, template_id: str) -> _T:
    if value is None:
        raise ApiError(404, "template_not_found", f"There is no template {template_id!r}.")
    return value


def _experiment(experiment: Experiment, variants: Sequence[str]) -> ExperimentResponse:
    """The experiment as the current variants see it: a promotion made for other variants no
    longer stands."""
    promoted = experiment.promoted_for(variants)
    return ExperimentResponse(
        promoted=promoted,
        promoted_at=experiment.promoted_at if promoted else None,
        winner=experiment.winner if promoted else None,
        value_remaining=experiment.value_remaining,
        probability_optimal=experiment.probability_optimal,
        probability_best=experiment.probability_best,
        leaders=experiment.leaders,
        evaluated_at=experiment.evaluated_at,
    )


def _insight(stored: StoredInsight) -> InsightResponse:
    insight = stored.insight
    return InsightResponse(
        id=stored.id,
        template_id=insight.template_id,
        kind=insight.kind,
        message=insight.message,
        evidence=insight.evidence,
        created_at=stored.created_at,
    )


def _response(row: TemplateRow) -> TemplateResponse:
    return TemplateResponse.model_validate(
        {
            "id": row.id,
            "name": row.name,
            "channel": row.channel,
            "version": row.version,
            "defaults": row.defaults,
            "variants": row.variants,
            "reward": row.reward,
            "holdout_share": row.holdout_share,
            "topic": row.topic,
            "transactional": row.transactional,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
        }
    )
