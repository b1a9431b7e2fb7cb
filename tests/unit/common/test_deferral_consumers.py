"""`message.deferred` on outcomes.v1: journey counts it, and every other consumer of the topic
passes it over by its ce_type header, undecoded."""

from __future__ import annotations

from collections.abc import Collection

import pytest

from libs.common import topics
from libs.common.bus.decoding import Decoding
from libs.common.events import MessageDeferred
from libs.common.events.catalog import TOPICS
from services.attribution.handlers import ACCEPTED_TYPES as ATTRIBUTION_TYPES
from services.content.handlers import ACCEPTED_TYPES as CONTENT_TYPES
from services.journey.broadcast import SEND_NODE
from services.journey.broadcast_api import _progress
from services.journey.engine import OUTCOME_COUNTER
from services.journey.handlers import ACCEPTED_TYPES as JOURNEY_TYPES
from services.journey.store import StatRow
from services.profile.handlers import ACCEPTED_TYPES as PROFILE_TYPES

ACCEPTED: dict[str, Collection[str]] = {
    "profile": PROFILE_TYPES,
    "journey": JOURNEY_TYPES,
    "content": CONTENT_TYPES,
    "attribution": ATTRIBUTION_TYPES,
}
DEFERRED = [("ce_id", b"d-1"), ("ce_type", MessageDeferred.event_type.encode())]


def test_the_consumers_listed_are_every_consumer_of_outcomes() -> None:
    [outcomes] = [topic for topic in TOPICS if topic.name == topics.OUTCOMES]
    assert set(outcomes.consumers) == set(ACCEPTED)


@pytest.mark.parametrize("service", sorted(ACCEPTED))
def test_only_journey_takes_a_deferral_and_the_others_pass_it_over_by_its_header(
    service: str,
) -> None:
    decoding = Decoding(f"closeloop-{service}", ACCEPTED[service])
    assert decoding.may_accept(DEFERRED) is (service == "journey")


def test_a_broadcast_s_progress_counts_the_deferrals_of_its_send() -> None:
    counters = [
        StatRow(1, SEND_NODE, "completed", 3),
        StatRow(1, SEND_NODE, f"{OUTCOME_COUNTER}sent", 1),
        StatRow(1, SEND_NODE, f"{OUTCOME_COUNTER}deferred", 2),
    ]

    progress = _progress(counters, [])

    assert (progress.requested, progress.sent, progress.deferred) == (3, 1, 2)
