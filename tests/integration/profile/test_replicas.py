"""Two replicas of the profile service change people at once and still agree on who is who.

The calls of one person are keyed by their user id or by one of their anonymous ids, so they
land on several partitions, which the consumer group shares out between the two processes:
both resolve, merge and count the same people at the same time.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from libs.common import topics
from libs.common.events import IngestIdentify, IngestPage, IngestTrack
from libs.devstack.services import ServiceProcess
from libs.devstack.stack import Stack
from tests.integration.profile.harness import (
    ProfileService,
    running_profile_replicas,
    timing,
    unique,
)
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration

_PEOPLE = 150
Call = IngestTrack | IngestIdentify | IngestPage


@pytest_asyncio.fixture(loop_scope="session")
async def two_replicas(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[ProfileService]:
    async with running_profile_replicas(stack, tmp_path_factory, 2) as service:
        yield service


def person_calls(run: str, person: int) -> list[list[Call]]:
    """One person's calls, by Kafka key (each list in order): two anonymous visits, then
    identifies that link both to the user id (the second merges two profiles), and tracks."""
    user, first, second = f"{run}-u{person}", f"{run}-a{person}", f"{run}-b{person}"

    def page(anonymous_id: str, minute: int) -> IngestPage:
        return IngestPage(
            messageId=unique(f"{run}-page"), anonymousId=anonymous_id, **timing(minute)
        )

    def identify(anonymous_id: str, minute: int) -> IngestIdentify:
        traits = {"email": f"{user}@example.com"}
        return IngestIdentify(
            messageId=unique(f"{run}-identify"),
            userId=user,
            anonymousId=anonymous_id,
            traits=traits,
            **timing(minute),
        )

    def track(minute: int) -> IngestTrack:
        return IngestTrack(
            messageId=unique(f"{run}-track"), userId=user, event="viewed", **timing(minute)
        )

    return [
        [page(first, 0), page(first, 1)],
        [page(second, 2), page(second, 3), page(second, 9)],
        [identify(first, 4), identify(second, 5), track(6), track(7), track(8)],
    ]


def interleaved(streams: list[list[Call]], seed: int) -> list[Call]:
    """All streams' calls mixed at random, each stream's own order kept."""
    shuffle = random.Random(seed)
    queues = [list(stream) for stream in streams if stream]
    mixed: list[Call] = []
    while queues:
        queue = shuffle.choice(queues)
        mixed.append(queue.pop(0))
        if not queue:
            queues.remove(queue)
    return mixed


async def test_two_replicas_resolve_merge_and_count_every_person_once(
    two_replicas: ProfileService,
) -> None:
    run = unique("replicas")
    await both_consuming(two_replicas, run)
    consumed_before = [await consumed(replica) for replica in two_replicas.replicas]
    streams = [stream for person in range(_PEOPLE) for stream in person_calls(run, person)]
    calls_per_person = sum(len(stream) for stream in person_calls(run, 0))
    await two_replicas.publish(*interleaved(streams, seed=7))

    async def all_counted() -> bool:
        counted = await two_replicas.fetchval(
            "SELECT count(*) FROM {schema}.profile_events WHERE message_id LIKE $1", f"{run}-%"
        )
        return int(counted) >= _PEOPLE * calls_per_person

    await wait_for(all_counted, within=120, what="every call in some profile's history")

    for person in range(_PEOPLE):
        user = f"{run}-u{person}"
        profile = await two_replicas.profile_of(f"user_id:{user}")
        assert profile is not None, user
        assert sum(profile["counters"].values()) == calls_per_person, (user, profile["counters"])
        assert {
            f"user_id:{user}",
            f"anonymous_id:{run}-a{person}",
            f"anonymous_id:{run}-b{person}",
            f"email:{user}@example.com",
        } <= set(profile["identifiers"]), user

    owners = await two_replicas.fetchval(
        "SELECT count(DISTINCT profile_id) FROM {schema}.identities WHERE value ~ $1",
        f"^{run}-[uab][0-9]",
    )
    assert owners == _PEOPLE, "one profile per person, none left behind by a merge"
    dangling = await two_replicas.fetchval(
        "SELECT count(*) FROM {schema}.identities i "
        "WHERE NOT EXISTS (SELECT FROM {schema}.profiles p WHERE p.id = i.profile_id)"
    )
    assert dangling == 0, "every identifier belongs to a living profile (no claim left over)"
    consumed_after = [await consumed(replica) for replica in two_replicas.replicas]
    assert all(
        after > before for before, after in zip(consumed_before, consumed_after, strict=True)
    ), "both replicas took part"


async def consumed(replica: ServiceProcess) -> float:
    """Ingest calls the replica has handled, from its own metrics."""
    async with httpx.AsyncClient(base_url=replica.url, timeout=5) as client:
        response = await client.get("/metrics")
    response.raise_for_status()
    return sum(
        float(line.rpartition(" ")[2])
        for line in response.text.splitlines()
        if line.startswith("closeloop_events_consumed_total{") and topics.INGEST in line
    )


async def both_consuming(service: ProfileService, run: str) -> None:
    """Publish anonymous page views on many keys until each replica has handled some: the
    consumer group has then shared the partitions out between both."""
    started = [await consumed(replica) for replica in service.replicas]
    wave = 0

    async def both_took_some() -> bool:
        nonlocal wave
        now = [await consumed(replica) for replica in service.replicas]
        if all(after > before for before, after in zip(started, now, strict=True)):
            return True
        wave += 1
        warm_up = [
            IngestPage(
                messageId=unique(f"{run}-warm"), anonymousId=f"{run}-w{wave}-{key}", **timing(0)
            )
            for key in range(24)
        ]
        await service.publish(*warm_up)
        return False

    await wait_for(both_took_some, within=60, what="both replicas consuming", every=1.0)
