"""The profile service's app: the consumer, the reviews of aging profiles, the fits of the
purchase models, its relay, and the REST routes."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common import topics
from libs.common.app import create_app
from libs.common.bus import EventConsumer
from libs.common.service import bus_parts
from libs.common.settings import Settings
from services.profile.api import predictions_router, profile_router
from services.profile.features import FeatureRules
from services.profile.fits import PredictionFits
from services.profile.handlers import ACCEPTED_TYPES, profile_handler
from services.profile.review import ProfileReviews
from services.profile.settings import ProfileSettings
from services.profile.store import history_retained


def create(settings: Settings) -> FastAPI:
    if not isinstance(settings, ProfileSettings):
        raise TypeError("the profile service needs ProfileSettings")
    parts = bus_parts(settings)
    parts.retention.keep(
        history_retained(settings.schema_name, settings.profile_event_retention_days)
    )
    consumer = EventConsumer(
        settings,
        topics=[topics.INGEST, topics.SEGMENT, topics.OUTCOMES, topics.ATTRIBUTION],
        handler=profile_handler(settings, parts.producer.partition_count),
        engine=parts.engine,
        producer=parts.producer,
        relay=parts.relay,
        accept_types=ACCEPTED_TYPES,
    )
    rules = FeatureRules.from_settings(settings)
    reviews = ProfileReviews(
        parts.engine,
        parts.relay,
        settings.schema_name,
        rules,
        interval_ms=settings.profile_review_interval_ms,
        batch_size=settings.profile_review_batch,
    )
    fits = PredictionFits(
        parts.engine,
        parts.relay,
        settings.schema_name,
        rules,
        fit_interval_hours=settings.profile_prediction_fit_interval_hours,
        rescore_batch=settings.profile_prediction_rescore_batch,
        churn_horizon_days=settings.profile_churn_horizon_days,
    )
    return create_app(
        settings,
        title="Profile",
        description="Who each person is, and what they are like: identity graph, traits, "
        "tags, computed features and predictive scores.",
        routers=[profile_router, predictions_router],
        workers=parts.workers(reviews, fits, consumer),
        readiness_checks=parts.readiness_checks(settings),
        state={**parts.app_state(settings), "feature_rules": rules, "fits": fits},
    )
