"""The content service's app: the consumer of requests, outcomes, conversions and profile merges
and erasures, the render sandbox, the evaluations of the variant experiments, the outbox relay,
and the templates, insights and copy APIs."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common import topics
from libs.common.app import create_app
from libs.common.bus import EventConsumer
from libs.common.service import bus_parts
from libs.common.settings import Settings
from services.content.api import copy_router, insights_router, templates_router
from services.content.copywriting import LlmCopywriter
from services.content.evaluations import ExperimentEvaluations
from services.content.experiments import PolicyCache
from services.content.handlers import ACCEPTED_TYPES, content_handler
from services.content.rendering import RequestRenderer
from services.content.sandbox import Limits, RenderSandbox
from services.content.settings import ContentSettings
from services.content.store import decisions_retained
from services.content.subscription_topics import DispatchTopics


def create(settings: Settings) -> FastAPI:
    assert isinstance(settings, ContentSettings)
    parts = bus_parts(settings)
    parts.retention.keep(
        decisions_retained(settings.schema_name, settings.content_decision_retention_days)
    )
    sandbox = RenderSandbox(_limits(settings), settings.content_render_workers)
    half_life_days = settings.content_evidence_half_life_days
    # Shared by the renderer, which keeps each template's fitted policy a while, and the
    # evaluations, which make it forget a template whose promotion changed.
    policies = PolicyCache(settings.content_model_cache_seconds)
    renderer = RequestRenderer(
        sandbox,
        settings.tracking_base_url,
        settings.tracking_secret.get_secret_value(),
        policies,
        half_life_days,
    )
    evaluations = ExperimentEvaluations(
        parts.engine,
        settings.schema_name,
        policies,
        interval_seconds=settings.content_evaluation_interval_seconds,
        half_life_days=half_life_days,
    )
    consumer = EventConsumer(
        settings,
        topics=[topics.REQUESTS, topics.OUTCOMES, topics.ATTRIBUTION, topics.PROFILE],
        handler=content_handler(
            settings.schema_name,
            renderer,
            half_life_days=half_life_days,
        ),
        engine=parts.engine,
        producer=parts.producer,
        relay=parts.relay,
        accept_types=ACCEPTED_TYPES,
    )
    return create_app(
        settings,
        title="Content",
        description="Liquid templates with versions and variants, a contextual variant bandit "
        "whose experiments end in promotions, tracked links, and copy suggestions.",
        routers=[templates_router, insights_router, copy_router],
        # The sandbox starts before the consumer that renders with it, and stops after it.
        workers=[*parts.workers(sandbox, evaluations, consumer)],
        readiness_checks=parts.readiness_checks(settings),
        state={
            **parts.app_state(settings),
            "sandbox": sandbox,
            "evaluations": evaluations,
            "copywriter": _copywriter(settings, sandbox),
            "topics": DispatchTopics(
                settings.content_dispatch_url,
                settings.admin_token.get_secret_value(),
                settings.content_topic_check_timeout_ms / 1000,
            ),
        },
    )


def _limits(settings: ContentSettings) -> Limits:
    return Limits(
        loop_iterations=settings.content_loop_iteration_limit,
        output_bytes=settings.content_output_limit_bytes,
        namespace_bytes=settings.content_namespace_limit_bytes,
        context_depth=settings.content_context_depth_limit,
        timeout_seconds=settings.content_render_timeout_ms / 1000,
        memory_bytes=settings.content_render_memory_limit_mb * 1024 * 1024,
    )


def _copywriter(settings: ContentSettings, sandbox: RenderSandbox) -> LlmCopywriter | None:
    if not settings.content_llm_base_url:
        return None
    return LlmCopywriter(
        settings.content_llm_base_url,
        settings.content_llm_model,
        settings.content_llm_api_key.get_secret_value(),
        settings.content_llm_timeout_ms / 1000,
        sandbox,
    )
