"""The attribution service's app: the consumer of outcomes, behaviours, and profile merges and
erasures, the outbox relay, and the conversions, reports and insights API.

Of profile.v1 it takes `profile.merged` and `profile.deleted` only: what changed about a
profile (`profile.updated`, and a behaviour's `profile_changes`) credits nothing, so the
consumer passes `profile.updated` over by its `ce_type` header, without decoding it."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common import topics
from libs.common.app import create_app
from libs.common.bus import EventConsumer
from libs.common.service import bus_parts
from libs.common.settings import Settings
from services.attribution.api import conversions_router, profiles_router, reports_router
from services.attribution.handlers import ACCEPTED_TYPES, attribution_handler
from services.attribution.settings import AttributionSettings
from services.attribution.store import touches_retained


def create(settings: Settings) -> FastAPI:
    assert isinstance(settings, AttributionSettings)
    parts = bus_parts(settings)
    parts.retention.keep(
        touches_retained(settings.schema_name, settings.attribution_touch_retention_days)
    )
    consumer = EventConsumer(
        settings,
        topics=[topics.OUTCOMES, topics.BEHAVIOR, topics.PROFILE],
        handler=attribution_handler(settings.schema_name),
        engine=parts.engine,
        producer=parts.producer,
        relay=parts.relay,
        accept_types=ACCEPTED_TYPES,
    )
    return create_app(
        settings,
        title="Attribution",
        description="Conversions credited to the messages that earned them; KPIs and insights.",
        routers=[conversions_router, reports_router, profiles_router],
        workers=parts.workers(consumer),
        readiness_checks=parts.readiness_checks(settings),
        state=parts.app_state(settings),
    )
