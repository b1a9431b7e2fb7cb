"""The segment service's app: the consumer of behaviours and profile changes, the window timers,
the outbox relay and the segments API."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common import topics
from libs.common.app import create_app
from libs.common.bus import EventConsumer
from libs.common.service import bus_parts
from libs.common.settings import Settings
from services.segment import api
from services.segment.handlers import ACCEPTED_TYPES, segment_handler
from services.segment.settings import SegmentSettings
from services.segment.store import behaviours_retained
from services.segment.timers import WindowTimers


def create(settings: Settings) -> FastAPI:
    assert isinstance(settings, SegmentSettings)
    parts = bus_parts(settings)
    parts.retention.keep(
        behaviours_retained(settings.schema_name, settings.segment_behaviour_retention_days)
    )
    consumer = EventConsumer(
        settings,
        topics=[topics.BEHAVIOR, topics.PROFILE],
        handler=segment_handler(settings.schema_name),
        engine=parts.engine,
        producer=parts.producer,
        relay=parts.relay,
        accept_types=ACCEPTED_TYPES,
    )
    timers = WindowTimers(
        parts.engine,
        parts.relay,
        settings.schema_name,
        poll_interval_ms=settings.segment_timer_poll_interval_ms,
        batch_size=settings.segment_timer_batch,
    )
    return create_app(
        settings,
        title="Segment",
        description="Segments over behaviours and profiles, in real time, on timers and in bulk.",
        routers=[api.router, api.behaviours_router],
        workers=parts.workers(timers, consumer),
        readiness_checks=parts.readiness_checks(settings),
        state=parts.app_state(settings),
    )
