"""The consumer's steps on their own, without a broker or a database: decoding and its ce_type
filter, the dead-letter policy, offset commits, the client's poll and replacement, and polls
dropped after a rebalance."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaConnectionError
from prometheus_client import REGISTRY

from libs.common.bus import DependencyUnavailable, UnprocessableEvent
from libs.common.bus import client as client_module
from libs.common.bus.client import ClientBroken, ConsumerClient, PollOverdue, background_failure
from libs.common.bus.commits import OffsetCommits, next_offsets
from libs.common.bus.dead_letter_policy import DeadLetterPolicy, DependencyDown
from libs.common.bus.decoding import Decoding, ce_type
from libs.common.bus.polling import Polls
from libs.common.bus.processing import count_consumed
from libs.common.bus.record import KafkaRecord
from libs.common.events import BehaviorOccurred, Event, encode
from libs.common.events.envelope import registry
from libs.common.events.profile import ProfileChange, ProfileUpdated
from libs.common.settings import Settings

TOPIC = "closeloop.test.steps"


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


def _behaviour(index: int) -> Event[BehaviorOccurred]:
    now = datetime.now(UTC)
    data = BehaviorOccurred(
        profile_id=f"prf_{index}",
        event="note_written",
        kind="track",
        occurred_at=now,
        received_at=now,
        message_id=f"m-{index}",
    )
    return Event(data=data, key=f"prf_{index}", source="closeloop/tests")


def _profile_updated(index: int) -> Event[ProfileUpdated]:
    data = ProfileUpdated(
        profile_id=f"prf_{index}",
        changes=[ProfileChange(field="traits.plan", after="premium")],
        occurred_at=datetime.now(UTC),
    )
    return Event(data=data, key=f"prf_{index}", source="closeloop/tests")


def _record(event: Event[Any], offset: int = 0, partition: int = 0) -> Record:
    key, value, headers = encode(event)
    return Record(TOPIC, partition, offset, key, value, headers)


def _raw(offset: int, value: bytes, headers: Sequence[tuple[str, bytes]]) -> Record:
    return Record(TOPIC, 0, offset, b"someone", value, headers)


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# Decoding --------------------------------------------------------------------------------------


async def test_a_registered_type_not_accepted_is_skipped_by_its_header_undecoded() -> None:
    decoding = Decoding("g-decode-skip", accept_types={BehaviorOccurred.event_type})
    # Not JSON: decoded, it would be a dead letter. Skipped by its header, it is nothing.
    not_ours = _raw(0, b"{not json", [("ce_id", b"not-ours"), ("ce_type", b"profile.updated")])
    decoded, letters = await decoding([not_ours])
    assert decoded == []
    assert letters == []
    assert not decoding.may_accept(not_ours.headers)


async def test_an_accepted_type_that_does_not_decode_is_a_dead_letter() -> None:
    group = "g-decode-invalid"
    decoding = Decoding(group, accept_types={BehaviorOccurred.event_type})
    broken = _raw(0, b"{not json", [("ce_id", b"broken"), ("ce_type", b"behavior.occurred")])
    decoded, letters = await decoding([broken])
    assert decoded == []
    assert [(letter.record, letter.error_type) for letter in letters] == [(broken, "invalid_event")]
    assert "ce_source" in letters[0].error
    assert _sample("closeloop_events_failed_total", group=group, topic=TOPIC, reason="invalid") == 1


async def test_a_type_nobody_registered_is_decoded_and_dead_lettered_not_skipped() -> None:
    decoding = Decoding("g-decode-unknown", accept_types={BehaviorOccurred.event_type})
    event = _behaviour(0)
    key, value, headers = encode(event)
    unknown = [(name, b"nobody.registered" if name == "ce_type" else raw) for name, raw in headers]
    unknown = [
        (name, b"urn:closeloop:schema:nobody.registered:v1" if name == "ce_dataschema" else raw)
        for name, raw in unknown
    ]
    record = Record(TOPIC, 0, 0, key, value, unknown)
    decoded, letters = await decoding([record])
    assert decoded == []
    assert len(letters) == 1
    assert "unknown event type 'nobody.registered'" in letters[0].error


async def test_the_last_ce_type_header_is_the_one_filtered_on() -> None:
    decoding = Decoding("g-decode-last", accept_types={BehaviorOccurred.event_type})
    record = _record(_behaviour(0))
    accepted_last = [("ce_type", b"profile.updated"), *record.headers]
    not_accepted_last = [*record.headers, ("ce_type", b"profile.updated")]
    assert ce_type(not_accepted_last) == b"profile.updated"
    assert decoding.may_accept(accepted_last)
    assert not decoding.may_accept(not_accepted_last)
    decoded, letters = await decoding(
        [
            Record(TOPIC, 0, 0, record.key, record.value, not_accepted_last),
            Record(TOPIC, 0, 1, record.key, record.value, accepted_last),
        ]
    )
    assert [r.offset for r, _ in decoded] == [1]
    assert letters == []


async def test_accepted_events_come_out_decoded_in_order_with_their_records() -> None:
    decoding = Decoding("g-decode-order", accept_types={BehaviorOccurred.event_type})
    events: list[Event[Any]] = []
    for index in range(70):  # more than one slice between two yields to the loop
        events.append(_behaviour(index) if index % 3 else _profile_updated(index))
    records = [_record(event, offset) for offset, event in enumerate(events)]
    decoded, letters = await decoding(records)
    wanted = [(r, e) for r, e in zip(records, events, strict=True) if e.type == "behavior.occurred"]
    assert [(r.offset, e.id) for r, e in decoded] == [(r.offset, e.id) for r, e in wanted]
    assert all(e == w for (_, e), (_, w) in zip(decoded, wanted, strict=True))
    assert letters == []


async def test_without_accepted_types_every_event_is_decoded() -> None:
    decoding = Decoding("g-decode-all", accept_types=None)
    events: list[Event[Any]] = [_behaviour(0), _profile_updated(1)]
    decoded, letters = await decoding([_record(e, i) for i, e in enumerate(events)])
    assert [e.id for _, e in decoded] == [e.id for e in events]
    assert letters == []
    assert decoding.may_accept([("ce_type", b"profile.updated")])


async def test_a_type_registered_after_the_consumer_was_made_is_filtered_once_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The header filter knows the types registered when the consumer was made; one that
    was not registered then is decoded, and filtered out by its type."""
    with monkeypatch.context() as patch:
        patch.setattr(registry, "all", lambda: [BehaviorOccurred])
        decoding = Decoding("g-decode-late", accept_types={BehaviorOccurred.event_type})
    late = _record(_profile_updated(0))
    assert decoding.may_accept(late.headers)
    decoded, letters = await decoding([late, _record(_behaviour(1), 1)])
    assert [e.type for _, e in decoded] == ["behavior.occurred"]
    assert letters == []


# The dead-letter policy --------------------------------------------------------------------------


@dataclass
class Transaction:
    """Stands for the batch's transaction: fails while any of `failing` is in the batch."""

    failing: dict[str, Exception] = field(default_factory=dict)
    calls: list[list[str]] = field(default_factory=list)
    handled: list[str] = field(default_factory=list)

    async def __call__(self, decoded: Sequence[tuple[KafkaRecord, Event[Any]]]) -> None:
        ids = [event.id for _, event in decoded]
        self.calls.append(ids)
        for event_id in ids:
            if event_id in self.failing:
                raise self.failing[event_id]
        self.handled.extend(ids)


def _policy(
    transaction: Transaction, *, database_answers: bool = True, **settings: Any
) -> DeadLetterPolicy:
    async def answers() -> bool:
        return database_answers

    return DeadLetterPolicy(
        Settings(**{"handler_retry_backoff_ms": 1, **settings}),
        group="g-policy",
        transaction=transaction,
        database_answers=answers,
    )


def _decoded(count: int, start: int = 0) -> list[tuple[KafkaRecord, Event[Any]]]:
    pairs: list[tuple[KafkaRecord, Event[Any]]] = []
    for offset in range(start, start + count):
        event = _behaviour(offset)
        pairs.append((_record(event, offset), event))
    return pairs


async def test_a_batch_that_goes_through_is_one_transaction_and_no_letters() -> None:
    transaction = Transaction()
    decoded = _decoded(5)
    assert await _policy(transaction).handle(decoded) == []
    assert transaction.calls == [[e.id for _, e in decoded]]


async def test_poison_is_isolated_one_by_one_after_the_retries() -> None:
    decoded = _decoded(5)
    poison_record, poison = decoded[2]
    transaction = Transaction(failing={poison.id: ValueError("poison by design")})
    letters = await _policy(transaction, handler_max_attempts=3).handle(decoded)
    assert [(letter.record, letter.error_type, letter.error) for letter in letters] == [
        (poison_record, "ValueError", "poison by design")
    ]
    everything = [e.id for _, e in decoded]
    assert transaction.calls[:3] == [everything] * 3  # the whole batch, each attempt
    assert transaction.calls[3:] == [[event_id] for event_id in everything]  # then one by one
    assert transaction.handled == [e.id for _, e in decoded if e is not poison]


async def test_an_unprocessable_event_is_not_retried_and_a_run_of_them_is_no_outage() -> None:
    decoded = _decoded(8)
    transaction = Transaction(
        failing={e.id: UnprocessableEvent("no such template") for _, e in decoded}
    )
    policy = _policy(transaction, handler_max_attempts=3, dlq_max_consecutive_failures=2)
    letters = await policy.handle(decoded)
    assert [letter.record for letter in letters] == [r for r, _ in decoded]
    assert {letter.error_type for letter in letters} == {"UnprocessableEvent"}
    assert len(transaction.calls) == 1 + len(decoded)  # one batch attempt, then each event


async def test_a_handler_saying_its_dependency_is_down_is_not_retried_nor_dead_lettered() -> None:
    decoded = _decoded(3)
    transaction = Transaction(failing={decoded[0][1].id: DependencyUnavailable("down")})
    with pytest.raises(DependencyDown):
        await _policy(transaction, handler_max_attempts=3).handle(decoded)
    assert len(transaction.calls) == 1


async def test_a_failing_batch_while_the_database_does_not_answer_is_a_dependency_down() -> None:
    decoded = _decoded(3)
    transaction = Transaction(failing={decoded[0][1].id: RuntimeError("connection reset")})
    with pytest.raises(DependencyDown):
        await _policy(transaction, database_answers=False, handler_max_attempts=2).handle(decoded)
    assert len(transaction.calls) == 2  # the attempts; never one by one


async def test_consecutive_failures_across_batches_mean_the_dependency_is_down() -> None:
    first, second = _decoded(3), _decoded(3, start=3)
    failing: dict[str, Exception] = {e.id: RuntimeError("boom") for _, e in first[1:]}
    failing[second[0][1].id] = RuntimeError("boom")
    transaction = Transaction(failing=failing)
    policy = _policy(transaction, handler_max_attempts=1, dlq_max_consecutive_failures=3)
    assert len(await policy.handle(first)) == 2  # two in a row: still poison
    with pytest.raises(DependencyDown):
        await policy.handle(second)  # the third in a row


async def test_an_event_that_goes_through_resets_the_consecutive_failures() -> None:
    decoded = _decoded(6)
    # Failing, failing, fine, failing, failing, fine: never three in a row.
    failing: dict[str, Exception] = {
        e.id: RuntimeError("boom") for index, (_, e) in enumerate(decoded) if index % 3 != 2
    }
    transaction = Transaction(failing=failing)
    policy = _policy(transaction, handler_max_attempts=1, dlq_max_consecutive_failures=3)
    assert len(await policy.handle(decoded)) == 4
    assert policy.consecutive_failures == 0


async def test_a_batch_mostly_failing_means_the_dependency_is_down() -> None:
    decoded = _decoded(12)
    # Two in three fail: above the ratio once ten were tried.
    failing: dict[str, Exception] = {
        e.id: RuntimeError("boom") for index, (_, e) in enumerate(decoded) if index % 3
    }
    transaction = Transaction(failing=failing)
    policy = _policy(
        transaction,
        handler_max_attempts=1,
        dlq_max_consecutive_failures=100,
        dlq_max_failure_ratio=0.5,
    )
    with pytest.raises(DependencyDown):
        await policy.handle(decoded)
    # Judged at the first failure once ten were tried (the eleventh event), not before, though
    # two in three had failed all along.
    assert len(transaction.calls) == 1 + 11


async def test_a_few_scattered_failures_are_dead_lettered() -> None:
    decoded = _decoded(12)
    failing: dict[str, Exception] = {
        e.id: RuntimeError("boom") for index, (_, e) in enumerate(decoded) if index % 3 == 0
    }
    transaction = Transaction(failing=failing)
    policy = _policy(
        transaction,
        handler_max_attempts=1,
        dlq_max_consecutive_failures=100,
        dlq_max_failure_ratio=0.5,
    )
    letters = await policy.handle(decoded)
    assert [letter.record.offset for letter in letters] == [0, 3, 6, 9]


def test_the_retry_delay_doubles_up_to_its_bound_and_starts_again_after_a_recovery() -> None:
    policy = _policy(Transaction(), handler_retry_backoff_ms=1000)
    assert [policy.retry_delay() for _ in range(6)] == [2.0, 4.0, 8.0, 16.0, 30.0, 30.0]
    policy.recovered()
    assert policy.retry_delay() == 2.0


# Offset commits ----------------------------------------------------------------------------------

TP0, TP1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


def _records(partition: int, *offsets: int) -> list[KafkaRecord]:
    return [Record(TOPIC, partition, offset, None, None, []) for offset in offsets]


def test_the_offsets_to_commit_are_one_past_each_partitions_last_record() -> None:
    records = {TP0: _records(0, 4, 5, 6), TP1: _records(1, 10)}
    assert next_offsets(records) == {TP0: 7, TP1: 11}


@dataclass
class Client:
    """Stands for an aiokafka consumer's commit side."""

    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    refuse: BaseException | None = None
    highwaters: dict[TopicPartition, int] = field(default_factory=dict)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.commits.append(dict(offsets))

    def assignment(self) -> set[TopicPartition]:
        return set(self.highwaters)

    def highwater(self, tp: TopicPartition) -> int:
        return self.highwaters[tp]


async def test_handled_batches_are_committed_together_and_only_once() -> None:
    group = "g-commits"
    client = Client(highwaters={TP0: 20})
    commits = OffsetCommits(Settings(), group=group, client=lambda: client)
    commits.handled({TP0: _records(0, 0, 1), TP1: _records(1, 0)})
    commits.handled({TP0: _records(0, 2, 3)})
    await commits.commit()
    assert client.commits == [{TP0: 4, TP1: 1}]
    await commits.commit()  # nothing handled since: no request
    assert client.commits == [{TP0: 4, TP1: 1}]
    # The lag of an assigned partition, after the commit.
    lag = _sample("closeloop_consumer_lag_messages", group=group, topic=TOPIC, partition="0")
    assert lag == 16


async def test_nothing_to_commit_does_not_need_a_client() -> None:
    def no_client() -> Any:
        raise RuntimeError("the consumer is not started")

    commits = OffsetCommits(Settings(), group="g-commits-none", client=no_client)
    await commits.commit()  # no error: the client is asked for only with offsets to commit


async def test_forgotten_offsets_are_not_committed() -> None:
    client = Client()
    commits = OffsetCommits(Settings(), group="g-commits-forget", client=lambda: client)
    commits.handled({TP0: _records(0, 0)})
    commits.forget()
    await commits.commit()
    assert client.commits == []


@pytest.mark.parametrize("refusal", [CommitFailedError(), IllegalStateError()])
async def test_a_commit_refused_after_a_rebalance_is_given_up(refusal: BaseException) -> None:
    client = Client(refuse=refusal)
    commits = OffsetCommits(Settings(), group="g-commits-refused", client=lambda: client)
    commits.handled({TP0: _records(0, 0)})
    await commits.commit()  # no error: the next owner redelivers
    client.refuse = None
    await commits.commit()
    assert client.commits == []  # not tried again


async def test_a_commit_failing_otherwise_reaches_the_consumer() -> None:
    client = Client(refuse=KafkaConnectionError("closed"))
    commits = OffsetCommits(Settings(), group="g-commits-fails", client=lambda: client)
    commits.handled({TP0: _records(0, 0)})
    with pytest.raises(KafkaConnectionError):
        await commits.commit()


async def test_commits_are_due_after_the_interval() -> None:
    client = Client()
    every_batch = OffsetCommits(
        Settings(kafka_commit_interval_ms=0), group="g-due", client=lambda: client
    )
    an_hour = OffsetCommits(
        Settings(kafka_commit_interval_ms=3_600_000), group="g-due", client=lambda: client
    )
    assert every_batch.due()
    assert not an_hour.due()


# The client ------------------------------------------------------------------------------------


@dataclass
class Fetcher:
    error_future: asyncio.Future[None]


@dataclass
class Kafka:
    """Stands for an aiokafka consumer: what it polls, seeks and how it stops."""

    polls: list[Any] = field(default_factory=list)
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)
    stopped: bool = False
    _fetcher: Fetcher | None = None
    assigned: set[TopicPartition] = field(default_factory=lambda: {TP0, TP1})

    async def getmany(self, *, timeout_ms: int, max_records: int) -> Any:
        outcome = self.polls.pop(0) if self.polls else {}
        if isinstance(outcome, BaseException):
            raise outcome
        if outcome == "hang":
            await asyncio.get_running_loop().create_future()
        return outcome

    def seek(self, tp: TopicPartition, offset: int) -> None:
        if tp not in self.assigned:
            raise IllegalStateError("not assigned")
        self.seeks.append((tp, offset))

    async def stop(self) -> None:
        self.stopped = True


def _client(kafka: Kafka | None, **settings: Any) -> ConsumerClient:
    async def before_revoke() -> None:
        return None

    holder = ConsumerClient(
        Settings.model_construct(**settings),
        group="g-client",
        topics=[TOPIC],
        in_flight=asyncio.Lock(),
        before_revoke=before_revoke,
    )
    holder.current = kafka
    return holder


async def test_a_dead_fetch_loop_is_told_from_its_future() -> None:
    loop = asyncio.get_running_loop()
    running, failed, cancelled = loop.create_future(), loop.create_future(), loop.create_future()
    failed.set_exception(RuntimeError("the handler is closed"))
    cancelled.cancel()
    assert background_failure(Kafka(_fetcher=Fetcher(running))) is None
    assert "handler is closed" in repr(background_failure(Kafka(_fetcher=Fetcher(failed))))
    assert "cancelled" in repr(background_failure(Kafka(_fetcher=Fetcher(cancelled))))
    running.cancel()


async def test_a_poll_on_a_client_whose_fetch_loop_died_raises_client_broken() -> None:
    died: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    died.set_exception(RuntimeError("the handler is closed"))
    kafka = Kafka(polls=[{TP0: _records(0, 0)}], _fetcher=Fetcher(died))
    with pytest.raises(ClientBroken):
        await _client(kafka).poll()
    assert kafka.polls, "a dead client is not polled"


async def test_a_kafka_error_from_a_poll_raises_client_broken() -> None:
    kafka = Kafka(polls=[KafkaConnectionError("closed")])
    with pytest.raises(ClientBroken) as raised:
        await _client(kafka).poll()
    assert isinstance(raised.value.reason, KafkaConnectionError)


async def test_an_overdue_poll_raises_client_broken_and_doubles_the_next_deadline() -> None:
    holder = _client(Kafka(polls=["hang", {}]), kafka_poll_deadline_ms=20)
    with pytest.raises(ClientBroken) as raised:
        await holder.poll()
    assert isinstance(raised.value.reason, PollOverdue)
    assert holder.overdue_polls == 1
    assert holder.poll_deadline_seconds() == pytest.approx(0.04)
    await holder.poll()  # one that returns resets the deadline
    assert holder.overdue_polls == 0
    assert holder.poll_deadline_seconds() == pytest.approx(0.02)


def test_the_poll_deadline_doubles_at_most_twice() -> None:
    holder = _client(None, kafka_poll_deadline_ms=1000)
    deadlines = []
    for overdue in range(5):
        holder.overdue_polls = overdue
        deadlines.append(holder.poll_deadline_seconds())
    assert deadlines == [1.0, 2.0, 4.0, 4.0, 4.0]


def test_a_batch_given_back_seeks_to_its_first_offsets_on_assigned_partitions() -> None:
    kafka = Kafka(assigned={TP0})
    _client(kafka).give_back({TP0: _records(0, 7, 8), TP1: _records(1, 3)})
    assert kafka.seeks == [(TP0, 7)]  # TP1 is another consumer's now: not an error


def test_no_client_is_an_error_to_use() -> None:
    with pytest.raises(RuntimeError, match="not started"):
        _ = _client(None).client


async def test_a_dead_client_is_stopped_and_replaced_once_a_new_one_starts(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(client_module, "_RESTART_BACKOFF_SECONDS", 0.0)
    old, new = Kafka(), Kafka()
    holder = _client(old, service_name="steps")
    tries: list[int] = []

    async def new_client() -> Any:
        tries.append(1)
        if len(tries) < 3:  # the broker is still away twice
            raise KafkaConnectionError("no broker")
        return new

    monkeypatch.setattr(holder, "_new_client", new_client)
    restarts = _sample("closeloop_consumer_restarts_total", group="g-client")
    await holder.replace(RuntimeError("the handler is closed"), wanted=lambda: True)
    assert old.stopped
    assert holder.current is new
    assert len(tries) == 3
    assert _sample("closeloop_consumer_restarts_total", group="g-client") == restarts + 1


async def test_a_replacement_is_not_tried_once_the_consumer_stops(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holder = _client(Kafka())

    async def new_client() -> Any:
        raise AssertionError("no new client for a consumer that stops")

    monkeypatch.setattr(holder, "_new_client", new_client)
    await holder.replace(RuntimeError("gone"), wanted=lambda: False)
    assert holder.current is None


# Polls -----------------------------------------------------------------------------------------


async def test_a_batch_polled_before_a_rebalance_is_dropped() -> None:
    event = _behaviour(0)
    kafka = Kafka(polls=[{TP0: [_record(event)]}, {TP0: [_record(event)]}])
    polls = Polls(_client(kafka), Decoding("g-polls", None), name="steps")
    polls.poll_ahead()
    await asyncio.sleep(0)  # the poll ahead takes its records
    polls.rebalanced()
    assert await polls.next() is None
    polled = await polls.next()
    assert polled is not None
    assert [e.id for _, e in polled.decoded] == [event.id]
    assert polled.size == 1


async def test_a_batch_polled_ahead_and_dropped_is_given_back() -> None:
    kafka = Kafka(polls=[{TP0: _records(0, 5, 6), TP1: _records(1, 2)}])
    polls = Polls(_client(kafka), Decoding("g-polls", None), name="steps")
    polls.poll_ahead()
    for _ in range(5):  # the poll ahead completes
        await asyncio.sleep(0)
    await polls.drop_ahead()
    assert sorted(kafka.seeks) == [(TP0, 5), (TP1, 2)]


# Counting --------------------------------------------------------------------------------------


def test_events_the_inbox_skipped_count_as_duplicates_not_as_consumed() -> None:
    group = "g-count"
    decoded = _decoded(3)
    fresh = [decoded[0][1], decoded[2][1]]
    count_consumed(group, decoded, fresh)
    labels = {"group": group, "topic": TOPIC}
    assert _sample("closeloop_events_duplicate_total", **labels) == 1
    consumed = _sample("closeloop_events_consumed_total", **labels, type="behavior.occurred")
    assert consumed == 2
