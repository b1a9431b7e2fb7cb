"""The typed shape of a message read from Kafka (aiokafka's ConsumerRecord is untyped)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class KafkaRecord(Protocol):
    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...
