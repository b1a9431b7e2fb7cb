"""PartitionChunks: rows gathered by the partition aiokafka's producer sends their keys to."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import DefaultPartitioner

from libs.common.bus.chunks import PartitionChunks

PARTITIONS = 12
_ALL = list(range(PARTITIONS))


def _producers_partition(key: bytes) -> int:
    """Where aiokafka's own partitioner puts the key: the oracle the chunks must agree with."""
    partition: int = DefaultPartitioner()(key, _ALL, _ALL)
    return partition


def _keys(count: int) -> list[bytes]:
    rng = random.Random(20)
    return [f"u_{rng.getrandbits(40):x}".encode() for _ in range(count)]


def test_every_row_lands_on_the_partition_its_key_hashes_to() -> None:
    chunks: PartitionChunks[bytes] = PartitionChunks(PARTITIONS, max_rows=7, max_size=10_000)
    closed: list[list[bytes]] = []
    for key in _keys(500):
        closed.extend(chunks.add(key, key))
    closed.extend(chunks.close_all())

    assert sorted(key for chunk in closed for key in chunk) == sorted(_keys(500))
    for chunk in closed:
        partition = _producers_partition(chunk[0])
        assert [_producers_partition(key) for key in chunk] == [partition] * len(chunk)
        assert chunks.partition(chunk[0]) == partition
        assert 1 <= len(chunk) <= 7


def test_a_partitions_rows_keep_their_order_across_chunks() -> None:
    chunks: PartitionChunks[int] = PartitionChunks(PARTITIONS, max_rows=5, max_size=10_000)
    keys = _keys(300)
    closed: list[list[int]] = []
    for index, key in enumerate(keys):
        closed.extend(chunks.add(key, index))
    closed.extend(chunks.close_all())
    by_partition: dict[int, list[int]] = {}
    for chunk in closed:
        by_partition.setdefault(_producers_partition(keys[chunk[0]]), []).extend(chunk)
    for rows in by_partition.values():
        assert rows == sorted(rows)


def test_a_chunk_closes_before_its_rows_would_pass_the_size() -> None:
    key = b"u_same"
    chunks: PartitionChunks[str] = PartitionChunks(PARTITIONS, max_rows=100, max_size=10)
    assert chunks.add(key, "a", 4) == []
    assert chunks.add(key, "b", 4) == []
    assert chunks.add(key, "c", 4) == [["a", "b"]]
    assert chunks.add(key, "huge", 50) == [["c"]]
    assert chunks.close(chunks.partition(key)) == ["huge"]
    assert chunks.close(chunks.partition(key)) is None
    assert not chunks


def test_a_chunk_needs_a_partition_and_a_row() -> None:
    with pytest.raises(ValueError):
        PartitionChunks(0, max_rows=1, max_size=1)
