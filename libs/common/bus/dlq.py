"""The dead-letter topic: messages that cannot be handled, with the reason, and their replay.

`python -m libs.common.bus.dlq list` shows what is there; `... replay` publishes each message
back to the topic it came from (optionally only those one consumer group failed), where every
consumer's inbox makes the copy harmless to those that had handled it already.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from aiokafka import AIOKafkaConsumer, TopicPartition

from libs.common import metrics, topics
from libs.common.bus.producer import EventProducer
from libs.common.bus.reader import header, read_to_end
from libs.common.bus.record import KafkaRecord
from libs.common.events.envelope import Headers
from libs.common.settings import Settings

ERROR = "dlq_error"
ERROR_TYPE = "dlq_error_type"
SOURCE_TOPIC = "dlq_source_topic"
SOURCE_PARTITION = "dlq_source_partition"
SOURCE_OFFSET = "dlq_source_offset"
GROUP = "dlq_group"
FAILED_AT = "dlq_failed_at"
_DLQ_HEADERS = frozenset(
    {ERROR, ERROR_TYPE, SOURCE_TOPIC, SOURCE_PARTITION, SOURCE_OFFSET, GROUP, FAILED_AT}
)
_MAX_ERROR_BYTES = 4096
REPLAY_GROUP = "closeloop-dlq-replay"


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message that failed, and why."""

    record: KafkaRecord
    error_type: str
    error: str


def dead_letter_headers(letter: DeadLetter, group: str) -> Headers:
    """The original headers, plus where the message came from and the error that stopped it."""
    record = letter.record
    original = [(name, value) for name, value in record.headers if name not in _DLQ_HEADERS]
    return [
        *original,
        (ERROR, letter.error.encode()[:_MAX_ERROR_BYTES]),
        (ERROR_TYPE, letter.error_type.encode()),
        (SOURCE_TOPIC, record.topic.encode()),
        (SOURCE_PARTITION, str(record.partition).encode()),
        (SOURCE_OFFSET, str(record.offset).encode()),
        (GROUP, group.encode()),
        (FAILED_AT, datetime.now(UTC).isoformat().encode()),
    ]


async def send_to_dlq(producer: EventProducer, group: str, letters: Sequence[DeadLetter]) -> None:
    """Dead-letter messages and wait until Kafka has them, so their offsets may be committed."""
    acknowledgements = [
        await producer.send(
            topics.DLQ, letter.record.key, letter.record.value, dead_letter_headers(letter, group)
        )
        for letter in letters
    ]
    await producer.wait_all(acknowledgements)
    for letter in letters:
        metrics.DLQ_EVENTS.labels(group, letter.record.topic).inc()


def replay_headers(headers: Sequence[tuple[str, bytes]]) -> Headers:
    """The headers a dead letter had before it failed."""
    return [(name, value) for name, value in headers if name not in _DLQ_HEADERS]


async def read_dead_letters(
    settings: Settings, *, group_id: str | None
) -> tuple[AIOKafkaConsumer, list[KafkaRecord]]:
    """Every dead letter up to the end the topic has now (from the group's position if given)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    records = await read_to_end(consumer, topics.DLQ, from_beginning=group_id is None)
    return consumer, records


async def replay(
    settings: Settings, *, source_group: str | None, dry_run: bool, from_beginning: bool = False
) -> int:
    """Publish dead letters back to their source topics; returns how many were replayed.

    The replay group remembers how far it got, so a second replay does not repeat the first;
    `from_beginning` rescans the whole topic (for letters an earlier filter passed over).
    """
    group_id = None if from_beginning else REPLAY_GROUP
    consumer, records = await read_dead_letters(settings, group_id=group_id)
    producer = EventProducer(settings)
    await producer.start()
    try:
        chosen = [r for r in records if source_group in (None, header(r, GROUP))]
        if not dry_run:
            acknowledgements = [
                await producer.send(
                    header(r, SOURCE_TOPIC), r.key, r.value, replay_headers(r.headers)
                )
                for r in chosen
            ]
            await producer.wait_all(acknowledgements)
            if group_id is not None:
                await _commit_read(consumer, records)
        for record in chosen:
            print(_describe(record, "replayed" if not dry_run else "would replay"))
        return len(chosen)
    finally:
        await producer.stop()
        await consumer.stop()


async def _commit_read(consumer: AIOKafkaConsumer, records: Sequence[KafkaRecord]) -> None:
    offsets: dict[TopicPartition, int] = {}
    for record in records:
        tp = TopicPartition(record.topic, record.partition)
        offsets[tp] = max(offsets.get(tp, 0), record.offset + 1)
    if offsets:
        await consumer.commit(offsets)


async def list_dead_letters(settings: Settings) -> int:
    consumer, records = await read_dead_letters(settings, group_id=None)
    await consumer.stop()
    for record in records:
        print(_describe(record, "dead letter"))
    return len(records)


def _describe(record: KafkaRecord, what: str) -> str:
    return (
        f"{what}: {header(record, 'ce_type') or '?'} id={header(record, 'ce_id') or '?'} "
        f"from {header(record, SOURCE_TOPIC)}[{header(record, SOURCE_PARTITION)}]"
        f"@{header(record, SOURCE_OFFSET)} group={header(record, GROUP)} "
        f"error={header(record, ERROR_TYPE)}: {header(record, ERROR)}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m libs.common.bus.dlq", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print every dead letter on the topic")
    replay_parser = commands.add_parser("replay", help="republish dead letters to their topics")
    replay_parser.add_argument("--group", help="only those this consumer group dead-lettered")
    replay_parser.add_argument("--dry-run", action="store_true", help="print, publish nothing")
    replay_parser.add_argument(
        "--from-beginning", action="store_true", help="rescan the whole topic, not only new letters"
    )
    args = parser.parse_args(argv)
    settings = Settings()
    if args.command == "list":
        count = asyncio.run(list_dead_letters(settings))
        print(f"{count} dead letter(s)")
    else:
        count = asyncio.run(
            replay(
                settings,
                source_group=args.group,
                dry_run=args.dry_run,
                from_beginning=args.from_beginning,
            )
        )
        print(f"{count} dead letter(s) {'would be ' if args.dry_run else ''}replayed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
