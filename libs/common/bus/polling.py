"""Polls of decoded batches, one polled ahead while the consumer is behind, and the rule that a
batch polled before a rebalance is dropped."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from libs.common.bus.batch import Decoded
from libs.common.bus.client import ConsumerClient, Records
from libs.common.bus.decoding import Decoding
from libs.common.bus.dlq import DeadLetter


@dataclass
class Polled:
    """One poll's records, decoded: what a batch is made of, and where it came from."""

    records: Records
    decoded: Decoded
    letters: list[DeadLetter]
    generation: int

    @property
    def size(self) -> int:
        return sum(len(batch) for batch in self.records.values())


class Polls:
    """The consumer's polls: each decoded, and the next one possibly fetched ahead."""

    def __init__(self, client: ConsumerClient, decoding: Decoding, *, name: str) -> None:
        self._client = client
        self._decoding = decoding
        self._name = name
        self._ahead: asyncio.Task[Polled | None] | None = None
        self._generation = 0  # counts rebalances: a batch polled before one is dropped

    async def next(self) -> Polled | None:
        """The batch polled ahead, or a new poll; None when there is nothing to handle.

        A batch polled before a rebalance is dropped: its partitions may belong to another
        consumer now, and the new assignment starts again from the committed offsets.
        """
        ahead, self._ahead = self._ahead, None
        polled = await ahead if ahead is not None else await self.poll()
        if polled is None or polled.generation != self._generation:
            return None
        return polled

    async def poll(self) -> Polled | None:
        records = await self._client.poll()
        # Taken when the records are: a rebalance revokes before it assigns, so records
        # returned after a revocation belong to the new assignment.
        generation = self._generation
        if not records:
            return None
        decoded, letters = await self._decoding(
            [record for batch in records.values() for record in batch]
        )
        return Polled(records, decoded, letters, generation)

    def poll_ahead(self) -> None:
        """Fetch and decode the next batch while this one's transaction waits on the database."""
        self._ahead = asyncio.create_task(self.poll(), name=f"{self._name}:poll-ahead")

    def rebalanced(self) -> None:
        self._generation += 1

    async def drop_ahead(self) -> None:
        """Cancel the poll ahead, and give back what it had polled, so nothing is skipped."""
        ahead, self._ahead = self._ahead, None
        if ahead is None:
            return
        ahead.cancel()
        await asyncio.wait([ahead])  # unlike awaiting it, this raises only our own cancellation
        if ahead.cancelled() or ahead.exception() is not None:
            return  # its error, if any, comes back from the next poll
        polled = ahead.result()
        if polled is not None and polled.generation == self._generation:
            self._client.give_back(polled.records)

    def abandon_ahead(self) -> None:
        """Cancel the poll ahead without waiting: nothing it polled was committed, so the group
        polls it again after us."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            ahead.cancel()
            ahead.add_done_callback(_retrieve_outcome)


def _retrieve_outcome(task: asyncio.Task[Any]) -> None:
    """Marks a dropped task's error as seen, so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()
