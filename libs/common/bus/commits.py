"""Offset commits: explicit, of handled records only, after their transaction committed."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError

from libs.common import metrics
from libs.common.bus.record import KafkaRecord
from libs.common.settings import Settings

# The consumer's log lines keep the logger name they have always had.
_log = logging.getLogger("libs.common.bus.consumer")

Records = Mapping[TopicPartition, Sequence[KafkaRecord]]


def next_offsets(records: Records) -> dict[TopicPartition, int]:
    """Where each partition resumes once these records are handled: after the last of each
    (records come from a poll, in offset order per partition)."""
    return {tp: batch[-1].offset + 1 for tp, batch in records.items() if batch}


class OffsetCommits:
    """The offsets of batches handled since the last commit, and their commit.

    Not after every batch: each commit is a request the broker serves, and redelivering a
    handled batch is safe (its inbox rows make it a no-op). At most `kafka_commit_interval_ms`
    of handled batches wait, and none once the consumer has caught up, is stopped, or gives its
    partitions up in a rebalance.
    """

    def __init__(
        self, settings: Settings, *, group: str, client: Callable[[], AIOKafkaConsumer]
    ) -> None:
        self._settings = settings
        self._group = group
        self._client = client  # the one in use when a commit is made
        self.uncommitted: dict[TopicPartition, int] = {}
        self._committed_at = time.monotonic()

    def handled(self, records: Records) -> None:
        """These records' batch is handled: their offsets are to be committed."""
        self.uncommitted.update(next_offsets(records))

    def due(self) -> bool:
        """Whether handled offsets have waited as long as they may."""
        waited = time.monotonic() - self._committed_at
        return waited >= self._settings.kafka_commit_interval_ms / 1000

    def forget(self) -> None:
        """Drop what is not committed: a new client resumes from the committed offsets, and the
        inbox skips what was handled since."""
        self.uncommitted.clear()

    async def commit(self) -> None:
        """Commit the offsets of the batches handled since the last commit."""
        self._committed_at = time.monotonic()
        offsets, self.uncommitted = self.uncommitted, {}
        if not offsets:
            return
        client = self._client()
        try:
            # A TimeoutError goes on to the consumer: a new client, from the committed offsets.
            async with asyncio.timeout(self._settings.kafka_commit_timeout_ms / 1000):
                await client.commit(offsets)
        except (CommitFailedError, IllegalStateError) as error:
            # The group rebalanced: the next owner redelivers, and its inbox skips what we did.
            _log.warning("offset commit refused after a rebalance", extra={"error": str(error)})
            return
        assigned = client.assignment()
        for tp, offset in offsets.items():
            highwater = client.highwater(tp) if tp in assigned else None
            if highwater is not None:
                metrics.CONSUMER_LAG.labels(self._group, tp.topic, tp.partition).set(
                    highwater - offset
                )
