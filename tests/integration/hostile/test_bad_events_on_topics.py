"""Bad messages put straight onto every consumed topic: each consumer group dead-letters them
with a reason (or, for a type it does not take, ignores them), and the loop still goes round."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from libs.common import topics
from libs.common.bus import dlq
from libs.common.bus.reader import header
from libs.common.events.envelope import registry
from services.attribution.handlers import ACCEPTED_TYPES as ATTRIBUTION_TYPES
from services.content.handlers import ACCEPTED_TYPES as CONTENT_TYPES
from services.dispatch.handlers import ACCEPTED_TYPES as DISPATCH_TYPES
from services.journey.handlers import ACCEPTED_TYPES as JOURNEY_TYPES
from services.profile.handlers import ACCEPTED_TYPES as PROFILE_TYPES
from services.segment.handlers import ACCEPTED_TYPES as SEGMENT_TYPES
from tests.integration.closed_loop.harness import now, unique
from tests.integration.hostile.conftest import SERVICES, Hostile
from tests.integration.hostile.corpus import TOPIC_TYPES, BadMessage, corpus, foreign_type
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration

ACCEPTED = {
    "profile": PROFILE_TYPES,
    "segment": SEGMENT_TYPES,
    "journey": JOURNEY_TYPES,
    "content": CONTENT_TYPES,
    "dispatch": DISPATCH_TYPES,
    "attribution": ATTRIBUTION_TYPES,
}
# Where a message was put: (topic, partition, offset).
Place = tuple[str, int, int]


_TIMESTAMP_KINDS = frozenset({"year 9999 timestamps", "year 1 timestamps"})
_REGISTERED = frozenset(model.event_type for model in registry.all())


@dataclass
class CorpusRun:
    """Where each bad message landed and what became of it in every consumer group."""

    placed: dict[Place, BadMessage]
    outcomes: dict[tuple[Place, str], str]
    reasons: dict[tuple[Place, str], tuple[str, str]]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def corpus_run(hostile: Hostile) -> CorpusRun:
    """Every topic's corpus put on the bus, and read back once every group is past it."""
    bootstrap = hostile.stack.kafka_bootstrap
    profile_id = unique("prf_hostile")
    registered = [model.event_type for model in registry.all()]
    messages = [
        message
        for topic in TOPIC_TYPES
        for message in corpus(
            topic,
            foreign_type(registered, [ACCEPTED[s] for s in hostile.consumers_of(topic)]),
            profile_id,
        )
    ]
    letters = _DeadLetters(bootstrap)
    await letters.start()
    try:
        placed = await _put(bootstrap, messages)
        last_of_topic = {place[0]: place for place in placed}  # sent in order: the last wins
        # Every group's letter for the last message of each topic, and every letter expected:
        # letters go to the DLQ's partitions by key, so a reader can see a later, small letter
        # before an earlier 1 MB one.
        awaited = {
            (last_of_topic[topic], hostile.group(service))
            for topic in TOPIC_TYPES
            for service in hostile.consumers_of(topic)
        } | {
            (place, hostile.group(service))
            for place, message in placed.items()
            if message.kind not in _TIMESTAMP_KINDS
            for service in hostile.consumers_of(message.topic)
            if _expected(message, ACCEPTED[service]) == "dlq"
        }

        async def every_group_past_the_corpus() -> bool:
            await letters.read()
            return awaited <= letters.seen.keys()

        await wait_for(
            every_group_past_the_corpus,
            within=120,
            what="every group to dead-letter its last bad message",
            every=0.5,
        )
        outcomes = await _outcomes(hostile, placed, letters)
    finally:
        await letters.stop()
    _print_table(hostile, placed, outcomes)
    return CorpusRun(placed, outcomes, letters.seen)


def _expected(message: BadMessage, accepted: frozenset[str]) -> str:
    """Ignored by a group that does not take its type, when that type is a registered one: the
    group tells from the ce_type header and does not decode it. Otherwise dead-lettered if it
    cannot be decoded (an absurd `ce_time` cannot), else ignored if the group does not take
    its type."""
    event_type = next(
        (v.decode("utf-8", "replace") for k, v in message.headers if k == "ce_type"), None
    )
    if event_type in _REGISTERED and event_type not in accepted:
        return "ignored"
    if message.expected == "ignored":
        return "ignored"
    return "dlq"


def _unexpected(hostile: Hostile, run: CorpusRun, kinds: Callable[[str], bool]) -> list[str]:
    wrong = []
    for place, message in run.placed.items():
        if not kinds(message.kind):
            continue
        for service in hostile.consumers_of(message.topic):
            outcome = run.outcomes[place, hostile.group(service)]
            expected = _expected(message, ACCEPTED[service])
            if not outcome.startswith(expected):
                wrong.append(f"{message.topic} / {message.kind} / {service}: {outcome}")
    return wrong


async def test_malformed_messages_are_dead_lettered_with_a_reason_by_every_group_taking_them(
    hostile: Hostile, corpus_run: CorpusRun
) -> None:
    wrong = _unexpected(
        hostile, corpus_run, lambda kind: kind not in _TIMESTAMP_KINDS | {"foreign known type"}
    )
    unreasoned = [
        key for key, (kind, reason) in corpus_run.reasons.items() if not (kind and reason)
    ]
    nobody = [
        f"{message.topic} / {message.kind}"
        for place, message in corpus_run.placed.items()
        if message.expected == "dlq"
        and not any(
            corpus_run.outcomes[place, hostile.group(service)].startswith("dlq")
            for service in hostile.consumers_of(message.topic)
        )
    ]
    assert not wrong, "malformed messages not dead-lettered:\n" + "\n".join(wrong)
    assert not unreasoned, f"dead letters without a reason: {unreasoned}"
    assert not nobody, "malformed messages no group dead-lettered:\n" + "\n".join(nobody)


async def test_a_type_no_consumer_of_the_topic_takes_is_ignored(
    hostile: Hostile, corpus_run: CorpusRun
) -> None:
    wrong = _unexpected(hostile, corpus_run, lambda kind: kind == "foreign known type")
    assert not wrong, "messages of a foreign type not ignored:\n" + "\n".join(wrong)


async def test_events_dated_year_9999_or_year_1_are_dead_lettered(
    hostile: Hostile, corpus_run: CorpusRun
) -> None:
    wrong = _unexpected(hostile, corpus_run, lambda kind: kind in _TIMESTAMP_KINDS)
    assert not wrong, "events with absurd timestamps handled as real:\n" + "\n".join(wrong)


async def test_after_the_corpus_the_loop_goes_round_and_every_service_is_healthy(
    hostile: Hostile, corpus_run: CorpusRun
) -> None:
    await _a_fresh_identify_goes_round(hostile)
    await _every_service_is_healthy(hostile)


class _DeadLetters:
    """Reads closeloop.dlq.v1 from where it ends now: (source place, group) -> (type, reason)."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_bytes=64 * 1024 * 1024
        )
        self.seen: dict[tuple[Place, str], tuple[str, str]] = {}

    async def start(self) -> None:
        await self._consumer.start()
        partitions = [
            TopicPartition(topics.DLQ, p)
            for p in sorted(self._consumer.partitions_for_topic(topics.DLQ) or ())
        ]
        self._consumer.assign(partitions)
        await self._consumer.seek_to_end(*partitions)
        for partition in partitions:  # resolve the end now, before anything is dead-lettered
            await self._consumer.position(partition)

    async def read(self) -> None:
        batches = await self._consumer.getmany(timeout_ms=200, max_records=10_000)
        for records in batches.values():
            for record in records:
                place = (
                    header(record, dlq.SOURCE_TOPIC),
                    int(header(record, dlq.SOURCE_PARTITION) or -1),
                    int(header(record, dlq.SOURCE_OFFSET) or -1),
                )
                reason = (header(record, dlq.ERROR_TYPE) or "", header(record, dlq.ERROR) or "")
                self.seen[place, header(record, dlq.GROUP) or ""] = reason

    async def stop(self) -> None:
        await self._consumer.stop()


async def _put(bootstrap: str, messages: Sequence[BadMessage]) -> dict[Place, BadMessage]:
    """Produce the messages as they are, in order; where each landed."""
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, max_request_size=4 * 1024 * 1024, acks="all"
    )
    await producer.start()
    try:
        placed: dict[Place, BadMessage] = {}
        for message in messages:
            sent = await producer.send_and_wait(
                message.topic, message.value, key=message.key, headers=message.headers
            )
            placed[message.topic, sent.partition, sent.offset] = message
        return placed
    finally:
        await producer.stop()


async def _outcomes(
    hostile: Hostile, placed: dict[Place, BadMessage], letters: _DeadLetters
) -> dict[tuple[Place, str], str]:
    """Per message and group: `dlq:<error type>`, `handled` (its id is in the group's inbox) or
    `ignored` (neither)."""
    outcomes: dict[tuple[Place, str], str] = {}
    for place, message in placed.items():
        event_id = next(
            (v.decode("utf-8", "replace") for k, v in message.headers if k == "ce_id"), ""
        )
        for service in hostile.consumers_of(message.topic):
            group = hostile.group(service)
            if (place, group) in letters.seen:
                outcomes[place, group] = f"dlq:{letters.seen[place, group][0]}"
                continue
            handled = await hostile.database.fetchval(
                f"SELECT count(*) FROM {hostile.schema(service)}.inbox "
                "WHERE consumer = $1 AND event_id = $2",
                group,
                event_id,
            )
            outcomes[place, group] = "handled" if handled else "ignored"
    return outcomes


def _print_table(
    hostile: Hostile, placed: dict[Place, BadMessage], outcomes: dict[tuple[Place, str], str]
) -> None:
    lines = [f"\n{'topic':<26} {'message kind':<26} outcome per consumer group"]
    for place, message in placed.items():
        per_group = ", ".join(
            f"{service}={outcomes[place, hostile.group(service)]}"
            for service in hostile.consumers_of(message.topic)
        )
        lines.append(f"{message.topic:<26} {message.kind:<26} {per_group}")
    print("\n".join(lines))


async def _a_fresh_identify_goes_round(hostile: Hostile) -> None:
    """The closed loop's warm-up journey again: identify -> segment -> journey -> content ->
    dispatch's webhook -> attribution's report."""
    loop, run = hostile.loop, hostile.run
    journey_id = f"jrn_warm_{run}"
    before = await _sent(hostile, journey_id)
    user_id = f"after_{uuid.uuid4().hex[:12]}"
    started = time.monotonic()
    await loop.track("identify", userId=user_id, traits={"warm_up": run}, timestamp=now())

    async def called_and_counted() -> bool:
        profile = await loop.profile_of(f"user_id:{user_id}")
        if profile is None:
            return False
        hooked = any(
            profile["id"].encode() in message["body"]
            for message in loop.providers.webhook("webhook").by_key.values()
        )
        return hooked and await _sent(hostile, journey_id) > before

    await wait_for(
        called_and_counted, within=60, what="a fresh identify to reach the webhook and attribution"
    )
    print(f"after the corpus, an identify went round in {time.monotonic() - started:.1f}s")


async def _sent(hostile: Hostile, journey_id: str) -> int:
    report = await hostile.loop.call(
        "attribution", "GET", "/reports/journey", params={"journey_id": journey_id}
    )
    return sum(int(row["sent"]) for row in report["rows"])


async def _every_service_is_healthy(hostile: Hostile) -> None:
    answers = await asyncio.gather(
        *(hostile.loop.clients[service].get("/healthz") for service in SERVICES)
    )
    unhealthy = {
        s: a.status_code for s, a in zip(SERVICES, answers, strict=True) if a.status_code != 200
    }
    assert not unhealthy, f"unhealthy after the corpus: {unhealthy}"
