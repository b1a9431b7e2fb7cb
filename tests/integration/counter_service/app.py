"""The counter test service's app: one consumer, its relay, the shared operations endpoints."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.app import create_app
from libs.common.bus import EventConsumer
from libs.common.events import BehaviorOccurred
from libs.common.service import bus_parts
from libs.common.settings import Settings
from tests.integration.counter_service.handlers import counting_handler
from tests.integration.counter_service.settings import CounterSettings


def create(settings: Settings) -> FastAPI:
    assert isinstance(settings, CounterSettings)
    parts = bus_parts(settings)
    consumer = EventConsumer(
        settings,
        topics=settings.counter_topics,
        handler=counting_handler(
            settings.schema_name,
            settings.counter_handler_delay_ms,
            settings.counter_reject_poison,
        ),
        engine=parts.engine,
        producer=parts.producer,
        relay=parts.relay,
        accept_types=[BehaviorOccurred.event_type],
    )
    return create_app(
        settings,
        title="Counter (test service)",
        workers=parts.workers(consumer),
        readiness_checks=parts.readiness_checks(settings),
    )
