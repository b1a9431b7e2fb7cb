"""An import's identify rows travel in chunks, ingest → profile → segment, and each row counts
once however often the file comes."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Sequence

import httpx
import pytest
import pytest_asyncio

from libs.common import topics
from libs.common.bus.producer import partition_of
from libs.common.events import (
    BehaviorIdentifiedChunk,
    BehaviorOccurred,
    IngestIdentify,
    IngestIdentifyChunk,
    SegmentEntered,
)
from libs.devstack.stack import Stack
from tests.integration.ingest.support import CreatedSource
from tests.integration.profile.harness import ProfileService
from tests.integration.segment.harness import SegmentHarness
from tests.integration.support import read_events, started_service, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

PEOPLE = 300
HEADER = "userId,traits.email,traits.cohort"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def segment_service(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[SegmentHarness]:
    logs = tmp_path_factory.mktemp("segment-logs")
    env = {"CLOSELOOP_KAFKA_SESSION_TIMEOUT_MS": "6000"}
    async with started_service(stack, logs, "segment", env=env) as (process, _):
        harness = SegmentHarness(stack, process)
        yield harness
        await harness.aclose()


def _rows(user_ids: Sequence[str], cohort: str) -> list[str]:
    return [f"{user_id},{user_id}@example.com,{cohort}" for user_id in user_ids]


def _csv(rows: Sequence[str]) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


async def _import(client: httpx.AsyncClient, source: CreatedSource, body: bytes) -> int:
    response = await client.post(
        "/v1/import", content=body, headers={"Content-Type": "text/csv"}, auth=source.auth
    )
    assert response.status_code == 200, response.text
    accepted: int = response.json()["accepted"]
    return accepted


def _one_per_partition(run: str, partitions: int) -> list[str]:
    """User ids whose keys cover every partition of ingest.v1."""
    found: dict[int, str] = {}
    index = 0
    while len(found) < partitions:
        user_id = f"sentinel_{run}_{index}"
        found.setdefault(partition_of(user_id.encode(), partitions), user_id)
        index += 1
    return list(found.values())


async def test_imported_people_are_made_once_in_chunks_and_enter_their_segment_once(
    client: httpx.AsyncClient,
    source: CreatedSource,
    stack: Stack,
    profile_service: ProfileService,
    segment_service: SegmentHarness,
) -> None:
    run = uuid.uuid4().hex[:8]
    segment = f"seg_import_{run}"
    created = await segment_service.create(segment, {"trait": "cohort", "op": "eq", "value": run})
    assert created.status_code == 201, created.text
    people = [f"u_{run}_{index}" for index in range(PEOPLE)]
    rows = _rows(people, run)

    assert await _import(client, source, _csv(rows)) == PEOPLE

    async def all_members() -> bool:
        return len(await segment_service.members(segment)) == PEOPLE

    await wait_for(all_members, within=90, what=f"{PEOPLE} imported people in their segment")

    # The file again, as it was (the same chunks), then reversed (other chunks, the same rows),
    # then one new person on each partition: once those are in, profile has taken the rest.
    assert await _import(client, source, _csv(rows)) == PEOPLE
    assert await _import(client, source, _csv(rows[::-1])) == PEOPLE
    sentinels = _one_per_partition(run, stack.partitions)
    assert await _import(client, source, _csv(_rows(sentinels, f"other_{run}"))) == len(sentinels)

    async def sentinels_in() -> bool:
        count: int = await profile_service.fetchval(
            f"SELECT count(*) FROM {profile_service.schema}.identities "
            "WHERE kind = 'user_id' AND value = ANY($1)",
            sentinels,
        )
        return count == len(sentinels)

    await wait_for(sentinels_in, within=60, what="the new person on each partition")

    schema = profile_service.schema
    people_profiles = (
        f"SELECT profile_id FROM {schema}.identities WHERE kind = 'user_id' AND value LIKE $1"
    )
    like = f"u\\_{run}\\_%"
    assert (
        await profile_service.fetchval(
            f"SELECT count(DISTINCT profile_id) FROM ({people_profiles}) owners", like
        )
        == PEOPLE
    )
    assert (
        await profile_service.fetchval(
            f"SELECT count(*) FROM {schema}.profiles WHERE id IN ({people_profiles}) "
            "AND state -> 'traits' ->> 'cohort' = $2 "
            "AND state -> 'traits' ->> 'email' LIKE 'u\\_%@example.com'",
            like,
            run,
        )
        == PEOPLE
    )
    # One identify in each person's history: the rows imported again were known duplicates.
    assert (
        await profile_service.fetchval(
            f"SELECT count(*) FROM {schema}.profile_events WHERE profile_id IN ({people_profiles})",
            like,
        )
        == PEOPLE
    )

    assert len(await segment_service.members(segment)) == PEOPLE
    entered = [
        event.data.profile_id
        for _, event in await read_events(stack.kafka_bootstrap, topics.SEGMENT)
        if isinstance(event.data, SegmentEntered) and event.data.segment_id == segment
    ]
    assert len(entered) == len(set(entered)) == PEOPLE

    await _assert_rows_travelled_in_chunks(stack, set(people))


async def _assert_rows_travelled_in_chunks(stack: Stack, people: set[str]) -> None:
    """Every row went to profile in a chunk on the partition its user id hashes to, and came
    out of profile in a chunk on the partition its profile id hashes to; none travelled alone."""
    partitions = stack.partitions
    chunked: set[str] = set()
    for record, event in await read_events(stack.kafka_bootstrap, topics.INGEST):
        if isinstance(event.data, IngestIdentify) and event.data.user_id in people:
            raise AssertionError(f"{event.data.user_id} was imported as an event of its own")
        if isinstance(event.data, IngestIdentifyChunk):
            for row in event.data.rows:
                if row.user_id in people:
                    assert row.user_id is not None
                    assert partition_of(row.user_id.encode(), partitions) == record.partition
                    chunked.add(row.user_id)
    assert chunked == people
    resolved: set[str] = set()
    for record, event in await read_events(stack.kafka_bootstrap, topics.BEHAVIOR):
        if isinstance(event.data, BehaviorOccurred) and event.data.user_id in people:
            raise AssertionError(f"{event.data.user_id}'s behaviour travelled alone")
        if isinstance(event.data, BehaviorIdentifiedChunk):
            for behaviour in event.data.rows:
                if behaviour.user_id in people:
                    key = behaviour.profile_id.encode()
                    assert partition_of(key, partitions) == record.partition
                    resolved.add(behaviour.user_id)
    assert resolved == people
