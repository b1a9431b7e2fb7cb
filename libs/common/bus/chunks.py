"""Rows gathered into chunks by the partition their keys go to: many rows, one message.

A chunk holds only rows whose keys the producer sends to one partition (`partition_of`), so
the chunk, keyed by any of its rows' keys, lands where each row would have landed alone. A
caller that sends other messages on the same topic closes the chunk of their partition first
(`close`), and each person's messages keep their order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, TypeVar

from libs.common.bus.producer import partition_of

R = TypeVar("R")


@dataclass
class _OpenChunk(Generic[R]):
    rows: list[R] = field(default_factory=list)
    size: int = 0


class PartitionChunks(Generic[R]):
    """Open chunks, one per partition; one closes at `max_rows` rows, or before its rows'
    sizes would pass `max_size` (a row larger than that is a chunk of its own)."""

    def __init__(self, partition_count: int, max_rows: int, max_size: int) -> None:
        if partition_count < 1 or max_rows < 1:
            raise ValueError("a chunk needs at least one partition and one row")
        self._partition_count = partition_count
        self._max_rows = max_rows
        self._max_size = max_size
        self._open: dict[int, _OpenChunk[R]] = {}

    def partition(self, key: bytes) -> int:
        """The partition a message with this key goes to."""
        return partition_of(key, self._partition_count)

    def add(self, key: bytes, row: R, size: int = 0) -> list[list[R]]:
        """Add a row to its partition's chunk; the chunks this closed (full), oldest first."""
        partition = self.partition(key)
        closed: list[list[R]] = []
        chunk = self._open.get(partition)
        if chunk is not None and chunk.rows and chunk.size + size > self._max_size:
            closed.append(self._open.pop(partition).rows)
            chunk = None
        if chunk is None:
            chunk = self._open[partition] = _OpenChunk()
        chunk.rows.append(row)
        chunk.size += size
        if len(chunk.rows) >= self._max_rows:
            closed.append(self._open.pop(partition).rows)
        return closed

    def close(self, partition: int) -> list[R] | None:
        """The partition's open chunk, closed; None when it has none."""
        chunk = self._open.pop(partition, None)
        return chunk.rows if chunk is not None and chunk.rows else None

    def close_all(self) -> list[list[R]]:
        """Every open chunk, closed, by partition."""
        closed = [self._open[partition].rows for partition in sorted(self._open)]
        self._open.clear()
        return [rows for rows in closed if rows]

    def __bool__(self) -> bool:
        return bool(self._open)
