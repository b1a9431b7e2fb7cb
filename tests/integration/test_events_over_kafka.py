"""Every event type's examples survive the trip through Kafka's headers, key and value."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from libs.common.bus import ensure_topics
from libs.common.events import Event, EventData, decode, registry
from libs.devstack.stack import Stack
from tests.integration.support import publish, read_topic

pytestmark = pytest.mark.integration


def _examples(model: type[EventData]) -> list[dict[str, Any]]:
    extra = model.model_config.get("json_schema_extra")
    assert isinstance(extra, dict), f"{model.__name__} has no examples"
    examples = extra["examples"]
    assert isinstance(examples, list) and examples, f"{model.__name__} has no examples"
    return [example for example in examples if isinstance(example, dict)]


async def test_every_event_type_round_trips_through_the_broker(stack: Stack) -> None:
    topic = f"closeloop.test.roundtrip-{uuid.uuid4().hex[:10]}"
    await ensure_topics(stack.kafka_bootstrap, [topic], 12, 1)
    sent = [
        Event(
            data=model.model_validate(example),
            key=f"prf_{index}",
            source="closeloop/tests",
            traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        for model in registry.all()
        for index, example in enumerate(_examples(model))
    ]
    await publish(stack.kafka_bootstrap, sent, topic=topic)
    received = {
        event.id: event
        for event in (
            decode(record.key, record.value, record.headers)
            for record in await read_topic(stack.kafka_bootstrap, topic)
        )
    }
    assert {event.type for event in sent} == {model.event_type for model in registry.all()}
    assert received == {event.id: event for event in sent}
