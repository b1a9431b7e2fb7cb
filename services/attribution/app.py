"""The attribution service's app: the consumer of outcomes, behaviours and profile changes, the
outbox relay, and the conversions, reports and insights API."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common import topics
from libs.common.app import create_app
from libs.common.bus import EventConsumer
from libs.common.service import bus_parts
from libs.common.settings import Settings
from services.attribution.api import conversions_router, reports_router
from services.attribution.handlers import ACCEPTED_TYPES, attribution_handler
from services.attribution.settings import AttributionSettings


def create(settings: Settings) -> FastAPI:
    assert isinstance(settings, AttributionSettings)
    parts = bus_parts(settings)
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
        routers=[
            conversions_router(parts.engine, settings.schema_name),
            reports_router(parts.engine, settings),
        ],
        workers=parts.workers(consumer),
        readiness_checks=parts.readiness_checks(settings),
    )
