"""The consumer's first step: records in, events out, with the types it does not handle
filtered out, and what does not decode as dead letters."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence

from libs.common import metrics
from libs.common.bus.batch import Decoded
from libs.common.bus.dlq import DeadLetter
from libs.common.bus.record import KafkaRecord
from libs.common.events import EventDecodeError, decode
from libs.common.events.envelope import registry

# The consumer's log lines keep the logger name they have always had.
_log = logging.getLogger("libs.common.bus.consumer")

# Events decoded between two chances for the batch in flight to run (about 0.2 ms of CPU).
_DECODE_SLICE = 32


def passed_over_types(accept_types: frozenset[str] | None) -> frozenset[bytes]:
    """The registered types a consumer does not handle, as their ce_type header spells them."""
    if accept_types is None:
        return frozenset()
    return frozenset(
        model.event_type.encode()
        for model in registry.all()
        if model.event_type not in accept_types
    )


def ce_type(headers: Sequence[tuple[str, bytes]]) -> bytes | None:
    """The ce_type header's raw value: the last one, as `decode` reads it."""
    event_type = None
    for name, raw in headers:
        if name == "ce_type":
            event_type = raw
    return event_type


class Decoding:
    """Decodes a poll's records, in order, into the events a consumer handles.

    An event of a registered type the consumer does not handle is told from its ce_type header
    before its value is decoded and validated, and skipped: a topic carries several types, and
    most consumers handle some. Whether such an event is valid is for the consumers that handle
    its type to judge. Anything else is decoded, and a message that does not decode (no
    ce_type, a type nobody registered) becomes a dead letter with the reason.
    """

    def __init__(self, group: str, accept_types: Collection[str] | None) -> None:
        self._group = group
        self._accept_types = frozenset(accept_types) if accept_types is not None else None
        self._passed_over = passed_over_types(self._accept_types)

    def may_accept(self, headers: Sequence[tuple[str, bytes]]) -> bool:
        """False for an event of a registered type this consumer does not handle."""
        return not self._passed_over or ce_type(headers) not in self._passed_over

    async def __call__(self, records: Sequence[KafkaRecord]) -> tuple[Decoded, list[DeadLetter]]:
        """Decode in slices, letting the batch in flight run between them: its transaction's
        replies from the database are then taken as they come, while this fills the waits."""
        decoded: Decoded = []
        letters: list[DeadLetter] = []
        passed_over = self._passed_over
        accept_types = self._accept_types
        for index, record in enumerate(records):
            if index and not index % _DECODE_SLICE:
                await asyncio.sleep(0)
            headers = record.headers
            if passed_over and ce_type(headers) in passed_over:
                continue
            try:
                event = decode(record.key, record.value, headers)
            except EventDecodeError as error:
                letters.append(self._invalid(record, error))
                continue
            # A type registered after this consumer was made passes its header check.
            if accept_types is None or event.type in accept_types:
                decoded.append((record, event))
        return decoded, letters

    def _invalid(self, record: KafkaRecord, error: EventDecodeError) -> DeadLetter:
        metrics.EVENTS_FAILED.labels(self._group, record.topic, "invalid").inc()
        _log.warning(
            "invalid event sent to the DLQ",
            extra={"topic": record.topic, "offset": record.offset, "error": str(error)},
        )
        return DeadLetter(record, "invalid_event", str(error))
