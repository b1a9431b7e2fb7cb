"""The dispatch service's app: the ledger's consumer, the sender, the outbox relay, the APIs."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common import topics
from libs.common.app import create_app
from libs.common.bus import EventConsumer
from libs.common.service import bus_parts
from libs.common.settings import Settings
from services.dispatch import api, tracking
from services.dispatch.addresses import WebhookResolver
from services.dispatch.handlers import ACCEPTED_TYPES, dispatch_handler
from services.dispatch.sender import Sender
from services.dispatch.settings import DispatchSettings
from services.dispatch.store import finished_sends_retained


def create(settings: Settings) -> FastAPI:
    assert isinstance(settings, DispatchSettings)
    parts = bus_parts(settings)
    parts.retention.keep(
        finished_sends_retained(settings.schema_name, settings.dispatch_send_retention_days)
    )
    sender = Sender(parts.engine, parts.relay, parts.producer, settings)
    consumer = EventConsumer(
        settings,
        topics=[topics.DELIVERIES, topics.PROFILE],
        handler=dispatch_handler(settings.schema_name, sender.wake),
        engine=parts.engine,
        producer=parts.producer,
        relay=parts.relay,
        accept_types=ACCEPTED_TYPES,
    )
    return create_app(
        settings,
        title="Dispatch",
        description="Sends rendered messages exactly once on every channel, within consent, "
        "caps and quiet hours, and turns receipts, opens and clicks into outcomes.",
        routers=[api.router, tracking.router],
        workers=parts.workers(sender, consumer),
        readiness_checks=parts.readiness_checks(settings),
        state={
            **parts.app_state(settings),
            "webhook_resolver": WebhookResolver(settings.dispatch_webhook_allowed_networks),
        },
    )
