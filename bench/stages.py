"""Where a track's time goes in the loop: each service's stage, read from the topics afterwards.

Every event the loop carries is a Kafka record stamped (CreateTime) when its producer published
it: ingest for `ingest.track`, the outbox relays for the others. A track's stage in a service
is the time from the record it consumed being published to the record it made being published:
waiting to be fetched, decoding, the handler, the commit and the relay. The chain of one track:

    due (the load generator's stamp) → ingest.track → behavior.occurred (profile)
    → message.requested (journey) → message.rendered (content) → message.sent (dispatch)

`ingest.track` is keyed by the caller's user id, the rest by the profile id;
`behavior.occurred` names both. message.sent is published once the webhook call has returned,
so the chain ends a little after the receiver took its latency.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, cast

import orjson
from aiokafka import AIOKafkaConsumer

from bench.report import percentile
from libs.common import topics
from libs.common.bus.reader import read_to_end
from libs.common.bus.record import KafkaRecord
from libs.common.events import (
    BehaviorOccurred,
    IngestTrack,
    MessageRendered,
    MessageRequested,
    MessageSent,
)

# Each service on the track's path, the topic of the record it makes and that record's type.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("ingest", topics.INGEST, IngestTrack.event_type),
    ("profile", topics.BEHAVIOR, BehaviorOccurred.event_type),
    ("journey", topics.REQUESTS, MessageRequested.event_type),
    ("content", topics.DELIVERIES, MessageRendered.event_type),
    ("dispatch", topics.OUTCOMES, MessageSent.event_type),
)
_TYPE_HEADER = "ce_type"
_ID_HEADER = "ce_id"
_READ_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Published:
    """One record of a stage's type: its key, when it was published (s), when its event was
    made (s, from a version-7 event id; None for another kind of id), and for behaviours the
    user id it resolved to its profile."""

    key: str
    at: float
    made_at: float | None = None
    user_id: str | None = None


@dataclass(frozen=True)
class StageLatency:
    """A stage's p50 and p99; and the p50 of its two parts, where the event ids tell when the
    handler made the event: consumed record published → event made (fetch, decode, handler),
    and event made → its record published (commit, relay)."""

    name: str
    count: int
    p50_ms: float
    p99_ms: float
    to_made_p50_ms: float = float("nan")
    made_to_published_p50_ms: float = float("nan")


def stage_latencies(
    due: Mapping[str, float], published: Mapping[str, Sequence[Published]]
) -> list[StageLatency]:
    """Each stage's p50 and p99 over the tracks that made it through that stage.

    `due` maps each track's user id to when it was due; `published` holds each stage's records
    by stage name. A key's first record of a stage counts (a redelivery publishes it again).
    """
    ingested = _first_by_key(published["ingest"])
    profile_of = {r.user_id: r.key for r in published["profile"] if r.user_id is not None}
    by_profile = {name: _first_by_key(published[name]) for name, _, _ in STAGES[1:]}
    stages = {name: _Stage() for name, _, _ in STAGES}
    whole: list[float] = []
    for user_id, due_at in due.items():
        chain = [ingested.get(user_id)]
        profile_id = profile_of.get(user_id, "")
        chain += [by_profile[name].get(profile_id) for name, _, _ in STAGES[1:]]
        previous = due_at
        for (name, _, _), record in zip(STAGES, chain, strict=True):
            if record is None:
                break
            stages[name].add(previous, record)
            previous = record.at
        else:
            whole.append(previous - due_at)
    summary = [stage.latency(name) for name, stage in stages.items()]
    return [*summary, _Stage(whole).latency("whole chain (due → message.sent published)")]


@dataclass
class _Stage:
    seconds: list[float] = field(default_factory=list)
    to_made: list[float] = field(default_factory=list)
    made_to_published: list[float] = field(default_factory=list)

    def add(self, previous: float, record: Published) -> None:
        self.seconds.append(record.at - previous)
        if record.made_at is not None:
            self.to_made.append(record.made_at - previous)
            self.made_to_published.append(record.at - record.made_at)

    def latency(self, name: str) -> StageLatency:
        if not self.seconds:
            return StageLatency(name, 0, _NONE, _NONE)
        ordered = sorted(self.seconds)
        return StageLatency(
            name,
            len(ordered),
            percentile(ordered, 0.5) * 1e3,
            percentile(ordered, 0.99) * 1e3,
            _p50_ms(self.to_made),
            _p50_ms(self.made_to_published),
        )


_NONE = float("nan")


def _p50_ms(seconds: list[float]) -> float:
    return percentile(sorted(seconds), 0.5) * 1e3 if seconds else _NONE


def _first_by_key(records: Iterable[Published]) -> dict[str, Published]:
    first: dict[str, Published] = {}
    for record in records:
        first.setdefault(record.key, record)
    return first


def made_at(event_id: str) -> float | None:
    """When a version-7 event id was made (s since the epoch); None for any other id."""
    try:
        parsed = uuid.UUID(event_id)
    except ValueError:
        return None
    return (parsed.int >> 80) / 1e3 if parsed.version == 7 else None


async def read_stages(bootstrap: str) -> dict[str, list[Published]]:
    """Every record of each stage's type on the loop's topics, from the beginning to the end."""
    return {
        name: await _read_topic(bootstrap, topic, event_type) for name, topic, event_type in STAGES
    }


async def _read_topic(bootstrap: str, topic: str, event_type: str) -> list[Published]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        records = await read_to_end(
            consumer, topic, from_beginning=True, within=_READ_TIMEOUT_SECONDS
        )
    finally:
        await consumer.stop()
    wanted = event_type.encode()
    return [
        _published(record, topic == topics.BEHAVIOR)
        for record in records
        if dict(record.headers).get(_TYPE_HEADER) == wanted and record.key
    ]


class _Stamped(KafkaRecord, Protocol):
    """What aiokafka's records also carry: when the producer made them, ms (CreateTime)."""

    @property
    def timestamp(self) -> int: ...


def _published(record: KafkaRecord, with_user: bool) -> Published:
    assert record.key is not None
    headers = dict(record.headers)
    made = made_at(headers.get(_ID_HEADER, b"").decode())
    key, at = record.key.decode(), cast(_Stamped, record).timestamp / 1e3
    if not with_user or record.value is None:
        return Published(key, at, made)
    return Published(key, at, made, orjson.loads(record.value).get("user_id"))
