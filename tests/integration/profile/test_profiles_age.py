"""Profiles age without events: the lifecycle stage moves on by itself and downstream hears it.

A profile service with its lifecycle measured in seconds instead of days: one identify, then
nothing, and the person is announced new (by the identify's behaviour), then at risk, dormant
and churned (by reviews' `profile.updated`), each once, in order.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime

import pytest
import pytest_asyncio

from libs.common import topics
from libs.common.events import (
    BehaviorOccurred,
    Event,
    IngestIdentify,
    ProfileChange,
    ProfileUpdated,
)
from libs.devstack.stack import Stack
from tests.integration.profile.harness import ProfileService, running_profile_service, unique
from tests.integration.support import publish, wait_for

pytestmark = pytest.mark.integration

SECOND = 1 / 86_400  # in days, as the lifecycle settings count
AGING = {
    "CLOSELOOP_LIFECYCLE_NEW_DAYS": str(5 * SECOND),
    "CLOSELOOP_LIFECYCLE_ACTIVE_DAYS": str(5 * SECOND),
    "CLOSELOOP_LIFECYCLE_AT_RISK_DAYS": str(15 * SECOND),
    "CLOSELOOP_LIFECYCLE_DORMANT_DAYS": str(25 * SECOND),
    "CLOSELOOP_PROFILE_REVIEW_INTERVAL_MS": "200",
}


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def fast_aging_profiles(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ProfileService]:
    async with running_profile_service(stack, tmp_path_factory, **AGING) as service:
        yield service


async def test_a_profile_left_alone_is_announced_at_risk_dormant_then_churned(
    fast_aging_profiles: ProfileService,
) -> None:
    service = fast_aging_profiles
    # The new service first reads the whole shared ingest topic. Once a first call of ours,
    # on the partition the person's calls go to, is on its profile, that partition has caught
    # up, and the person's identify is usually handled within its first seconds of being new.
    user_id, caught_up = unique("idle"), unique("caught-up")
    await publish(service.stack.kafka_bootstrap, [_identify(caught_up, key=user_id)])
    await service.wait_for_profile(f"user_id:{caught_up}", within=60)
    call = _identify(user_id, key=user_id)
    await publish(service.stack.kafka_bootstrap, [call])
    profile = await service.wait_for_profile(f"user_id:{user_id}")
    # The identify says the stage it gave the profile in its behaviour's `profile_changes`.
    [behaviour] = await service.wait_for_events(topics.BEHAVIOR, message_id=call.id)
    assert isinstance(behaviour.data, BehaviorOccurred)
    stages: list[ProfileUpdated] = []

    async def churned() -> bool:
        stages[:] = [
            event.data
            for event in await service.events_on(topics.PROFILE, profile_id=profile["id"])
            if isinstance(event.data, ProfileUpdated)
            and any(change.field == "lifecycle_stage" for change in event.data.changes)
        ]
        return bool(stages) and _stage(stages[-1].changes) == "churned"

    await wait_for(churned, within=60, what="the profile to be announced churned", every=0.5)
    # The identify gives the stage the profile has when it is handled: "new", unless the
    # service was still catching up the shared topic for longer than the new window (CI has
    # seen that), then "at_risk". From there on only time moves it, each stage announced once
    # in a `profile.updated` of a review.
    announced = [_stage(behaviour.data.profile_changes)] + [
        _stage(update.changes) for update in stages
    ]
    assert announced in (
        ["new", "at_risk", "dormant", "churned"],
        ["at_risk", "dormant", "churned"],
    )
    assert all(update.caused_by is None for update in stages)  # the reviews'
    assert (await service.profile_of(f"user_id:{user_id}") or {})["lifecycle_stage"] == "churned"
    due = await service.fetchval(
        "SELECT review_due_at FROM {schema}.profiles WHERE id = $1", profile["id"]
    )
    assert due is None  # churned, with no order: nothing left to age


def _stage(changes: Sequence[ProfileChange]) -> str | None:
    [change] = [change for change in changes if change.field == "lifecycle_stage"]
    return change.after if isinstance(change.after, str) else None


def _identify(user_id: str, *, key: str) -> Event[IngestIdentify]:
    """An identify of `user_id` on the partition of `key` (profile resolves by the call's ids,
    whatever the key)."""
    now = datetime.now(UTC)
    call = IngestIdentify(
        message_id=unique("identify"),
        user_id=user_id,
        traits={"plan": "basic"},
        timestamp=now,
        received_at=now,
        source_id="src_tests",
    )
    return Event(data=call, key=key, source="tests", id=call.message_id)
