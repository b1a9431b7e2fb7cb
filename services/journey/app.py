"""The journey service's app: the consumer of segment moves, behaviours, outcomes and profile
changes, the durable timers, the outbox relay and the journeys API."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common import topics
from libs.common.app import create_app
from libs.common.bus import EventConsumer
from libs.common.service import bus_parts
from libs.common.settings import Settings
from services.journey.api import journeys_router
from services.journey.handlers import ACCEPTED_TYPES, journey_handler
from services.journey.references import HttpReferences
from services.journey.settings import JourneySettings
from services.journey.timers import JourneyTimers


def create(settings: Settings) -> FastAPI:
    assert isinstance(settings, JourneySettings)
    parts = bus_parts(settings)
    consumer = EventConsumer(
        settings,
        topics=[topics.SEGMENT, topics.BEHAVIOR, topics.OUTCOMES, topics.PROFILE],
        handler=journey_handler(settings.schema_name, step_limit=settings.journey_step_limit),
        engine=parts.engine,
        producer=parts.producer,
        relay=parts.relay,
        accept_types=ACCEPTED_TYPES,
    )
    timers = JourneyTimers(
        parts.engine,
        parts.relay,
        settings.schema_name,
        poll_interval_ms=settings.journey_timer_poll_interval_ms,
        batch_size=settings.journey_timer_batch,
        step_limit=settings.journey_step_limit,
    )
    references = HttpReferences(
        content_url=settings.journey_content_url,
        segment_url=settings.journey_segment_url,
        admin_token=settings.admin_token.get_secret_value(),
        timeout_seconds=settings.journey_reference_timeout_ms / 1000,
    )
    router = journeys_router(parts.engine, settings.schema_name, references)
    return create_app(
        settings,
        title="Journey",
        description="Journeys as graphs: who enters, what they are sent, when, and what next.",
        routers=[router],
        workers=parts.workers(timers, consumer),
        readiness_checks=parts.readiness_checks(settings),
    )
