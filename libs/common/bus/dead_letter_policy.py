"""What a failing batch comes to: retried, its poison isolated and dead-lettered, or, when a
dependency looks down rather than the events bad, given back to be polled again later.

The DLQ limit follows Sentry arroyo's `DlqLimit` (decision 0004): poison is rare and
scattered, while an outage fails event after event, and dead-lettering those would empty the
topics into the DLQ.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from libs.common import metrics
from libs.common.bus.batch import DependencyUnavailable, UnprocessableEvent
from libs.common.bus.dlq import DeadLetter
from libs.common.bus.record import KafkaRecord
from libs.common.events import Event
from libs.common.settings import Settings

# The consumer's log lines keep the logger name they have always had.
_log = logging.getLogger("libs.common.bus.consumer")

# A batch of fewer events than this tells too little to decide that a dependency is down.
_MIN_EVENTS_TO_JUDGE_DEPENDENCY = 10
_MAX_DEPENDENCY_BACKOFF_SECONDS = 30.0

Transaction = Callable[[Sequence[tuple[KafkaRecord, Event[Any]]]], Awaitable[None]]


class DependencyDown(Exception):
    """The batch failed because something its handler needs is down: nothing is dead-lettered,
    and the batch is polled again after a pause."""


class DeadLetterPolicy:
    """Runs a batch's transaction and decides what its failures come to.

    A failing batch is retried with backoff, then handled event by event: those events that
    still fail are the poison, dead-lettered with their error, and the rest commit. The handler
    raising `DependencyUnavailable`, the database not answering, or too many events failing
    (in a row across batches, or as a share of a batch) raise `DependencyDown` instead.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        group: str,
        transaction: Transaction,
        database_answers: Callable[[], Awaitable[bool]],
    ) -> None:
        self._settings = settings
        self._group = group
        self._transaction = transaction
        self._database_answers = database_answers
        self.consecutive_failures = 0  # events failing on their own, in a row, across batches
        self.dependency_failures = 0  # batches given back in a row

    async def handle(self, decoded: Sequence[tuple[KafkaRecord, Event[Any]]]) -> list[DeadLetter]:
        """Handle the batch; return the events to dead-letter (the rest were handled)."""
        if not decoded:
            return []
        attempts = self._settings.handler_max_attempts
        for attempt in range(1, attempts + 1):
            try:
                await self._transaction(decoded)
                self.consecutive_failures = 0
                return []
            except DependencyUnavailable as error:
                _log.warning(
                    "dependency unavailable", extra={"group": self._group, "error": str(error)}
                )
                raise DependencyDown from error
            except UnprocessableEvent:
                break  # retrying cannot help: find the event, one by one
            except Exception:
                _log.exception("batch failed", extra={"group": self._group, "attempt": attempt})
                metrics.BATCH_RETRIES.labels(self._group).inc()
                if attempt < attempts:
                    await asyncio.sleep(
                        self._settings.handler_retry_backoff_ms / 1000 * 2 ** (attempt - 1)
                    )
        if not await self._database_answers():
            raise DependencyDown
        return await self.isolate_poison(decoded)

    async def isolate_poison(
        self, decoded: Sequence[tuple[KafkaRecord, Event[Any]]]
    ) -> list[DeadLetter]:
        """Handle the events one by one: those that still fail are the poison."""
        letters: list[DeadLetter] = []
        failed = tried = 0
        for record, event in decoded:
            try:
                await self._transaction([(record, event)])
            except DependencyUnavailable as error:
                raise DependencyDown from error
            except UnprocessableEvent as error:
                letters.append(self._dead_letter(record, event, error))
            except Exception as error:
                self.consecutive_failures += 1
                failed, tried = failed + 1, tried + 1
                letters.append(self._dead_letter(record, event, error))
                if self.dependency_looks_down(failed, tried):
                    raise DependencyDown from error
            else:
                self.consecutive_failures = 0
                tried += 1
        return letters

    def dependency_looks_down(self, failed: int, tried: int) -> bool:
        """Poison is rare and scattered; a dependency outage fails event after event."""
        if self.consecutive_failures >= self._settings.dlq_max_consecutive_failures:
            return True
        return (
            tried >= _MIN_EVENTS_TO_JUDGE_DEPENDENCY
            and failed / tried > self._settings.dlq_max_failure_ratio
        )

    def retry_delay(self) -> float:
        """How long to wait before the batch given back is polled again: growing with each
        batch given back in a row, up to a bound."""
        self.dependency_failures += 1
        delay: float = min(
            _MAX_DEPENDENCY_BACKOFF_SECONDS,
            self._settings.handler_retry_backoff_ms / 1000 * 2.0**self.dependency_failures,
        )
        _log.warning(
            "dependency down; batch will be retried",
            extra={"group": self._group, "retry_in_seconds": delay},
        )
        return delay

    def recovered(self) -> None:
        """A batch went through: the next outage's backoff starts small again."""
        self.dependency_failures = 0

    def _dead_letter(self, record: KafkaRecord, event: Event[Any], error: Exception) -> DeadLetter:
        metrics.EVENTS_FAILED.labels(self._group, record.topic, "handler").inc()
        _log.warning(
            "event failed on its own",
            extra={"event_id": event.id, "type": event.type, "error": repr(error)},
        )
        return DeadLetter(record, type(error).__name__, str(error) or repr(error))
