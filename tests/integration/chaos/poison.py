"""Poison records on every consumed topic, and the dead letters they must come to.

A poison record carries valid CloudEvents headers for a type its topic's consumers handle, and a
value they cannot take: bytes that are not JSON, or JSON the type's schema refuses. Every
consumer group that handles the type must dead-letter it once (`closeloop.dlq.v1`, with
`dlq_group`) and go on; one that skips the type by its `ce_type` header never sees it.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from libs.common import topics
from libs.common.bus import EventProducer, dlq
from libs.common.bus.reader import header
from libs.common.events.envelope import attribute_headers, registry
from libs.common.settings import Settings
from services.attribution.handlers import ACCEPTED_TYPES as ATTRIBUTION_TYPES
from services.content.handlers import ACCEPTED_TYPES as CONTENT_TYPES
from services.dispatch.handlers import ACCEPTED_TYPES as DISPATCH_TYPES
from services.journey.handlers import ACCEPTED_TYPES as JOURNEY_TYPES
from services.profile.handlers import ACCEPTED_TYPES as PROFILE_TYPES
from services.segment.handlers import ACCEPTED_TYPES as SEGMENT_TYPES
from tests.integration.support import read_topic

# Each consumer group: the topics it reads (as each service's app.py subscribes) and the types
# it handles.
CONSUMERS: dict[str, tuple[tuple[str, ...], frozenset[str]]] = {
    "profile": (
        (topics.INGEST, topics.SEGMENT, topics.OUTCOMES, topics.ATTRIBUTION),
        PROFILE_TYPES,
    ),
    "segment": ((topics.BEHAVIOR, topics.PROFILE), SEGMENT_TYPES),
    "journey": ((topics.SEGMENT, topics.BEHAVIOR, topics.OUTCOMES, topics.PROFILE), JOURNEY_TYPES),
    "content": (
        (topics.REQUESTS, topics.OUTCOMES, topics.ATTRIBUTION, topics.PROFILE),
        CONTENT_TYPES,
    ),
    "dispatch": ((topics.DELIVERIES, topics.PROFILE), DISPATCH_TYPES),
    "attribution": ((topics.OUTCOMES, topics.BEHAVIOR, topics.PROFILE), ATTRIBUTION_TYPES),
}
# The type each topic's poison claims to be: one its consumers handle.
POISON_TYPES = {
    topics.INGEST: "ingest.track",
    topics.BEHAVIOR: "behavior.occurred",
    topics.PROFILE: "profile.deleted",
    topics.SEGMENT: "segment.entered",
    topics.REQUESTS: "message.requested",
    topics.DELIVERIES: "message.rendered",
    topics.OUTCOMES: "message.sent",
    topics.ATTRIBUTION: "conversion.attributed",
}
# Not JSON at all; and JSON that no event type's schema accepts.
UNDECODABLE = b"\xff\xfe\x00 not json {"
SCHEMA_INVALID = b'{"poison": true, "profile_id": 42}'


@dataclass
class Poison:
    """What was injected, and the dead letters expected of it: (source topic, group) -> count."""

    run: str
    injected: Counter[str] = field(default_factory=Counter)
    expected: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def prefix(self) -> str:
        return f"poison_{self.run}_"

    async def inject(self, bootstrap: str) -> None:
        """One poison record on every consumed topic, alternately undecodable and invalid."""
        producer = EventProducer(Settings(kafka_bootstrap=bootstrap, kafka_idempotence=False))
        await producer.start()
        try:
            acknowledgements = []
            for topic, event_type in POISON_TYPES.items():
                number = self.injected.total()
                value = UNDECODABLE if number % 2 == 0 else SCHEMA_INVALID
                key = f"{self.prefix}{number}".encode()
                acknowledgements.append(
                    await producer.send(topic, key, value, _headers(event_type))
                )
                self.injected[topic] += 1
                for group in handling_groups(topic, event_type):
                    self.expected[(topic, f"closeloop-{group}_{self.run}")] += 1
            await producer.wait_all(acknowledgements)
        finally:
            await producer.stop()

    async def dead_letters(self, bootstrap: str) -> Counter[tuple[str, str]]:
        """The poison's dead letters on the DLQ: (source topic, group) -> count."""
        found: Counter[tuple[str, str]] = Counter()
        for record in await read_topic(bootstrap, topics.DLQ):
            if record.key is None or not record.key.decode(errors="replace").startswith(
                self.prefix
            ):
                continue
            found[(header(record, dlq.SOURCE_TOPIC), header(record, dlq.GROUP))] += 1
        return found


def handling_groups(topic: str, event_type: str) -> Iterable[str]:
    return [
        group
        for group, (subscribed, accepted) in CONSUMERS.items()
        if topic in subscribed and event_type in accepted
    ]


def _headers(event_type: str) -> list[tuple[str, bytes]]:
    version = max(model.event_version for model in registry.all() if model.event_type == event_type)
    return attribute_headers(
        event_type,
        version,
        str(uuid.uuid4()),
        "closeloop/chaos",
        datetime.now(UTC).isoformat(),
    )
