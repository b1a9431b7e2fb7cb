"""The Kafka topics of the loop: one constant per topic, named as in the architecture brief."""

from __future__ import annotations

from typing import Final

INGEST: Final = "closeloop.ingest.v1"
BEHAVIOR: Final = "closeloop.behavior.v1"
PROFILE: Final = "closeloop.profile.v1"
SEGMENT: Final = "closeloop.segment.v1"
REQUESTS: Final = "closeloop.requests.v1"
DELIVERIES: Final = "closeloop.deliveries.v1"
OUTCOMES: Final = "closeloop.outcomes.v1"
ATTRIBUTION: Final = "closeloop.attribution.v1"
DLQ: Final = "closeloop.dlq.v1"

ALL: Final = (
    INGEST,
    BEHAVIOR,
    PROFILE,
    SEGMENT,
    REQUESTS,
    DELIVERIES,
    OUTCOMES,
    ATTRIBUTION,
    DLQ,
)
