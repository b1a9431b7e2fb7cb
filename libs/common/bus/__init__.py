"""The event bus: producer, consumer, inbox, outbox relay and dead-letter queue over Kafka."""

from libs.common.bus.admin import ensure_topics
from libs.common.bus.consumer import (
    Batch,
    BatchHandler,
    DependencyUnavailable,
    EventConsumer,
    UnprocessableEvent,
)
from libs.common.bus.outbox import OutboxRelay, write_outbox
from libs.common.bus.producer import EventProducer, Message

__all__ = [
    "Batch",
    "BatchHandler",
    "DependencyUnavailable",
    "EventConsumer",
    "EventProducer",
    "Message",
    "OutboxRelay",
    "UnprocessableEvent",
    "ensure_topics",
    "write_outbox",
]
