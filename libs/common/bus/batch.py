"""What a consumer's handler gets (a `Batch`) and what it may raise to say how it failed."""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.bus.record import KafkaRecord
from libs.common.events import Event, EventData

D = TypeVar("D", bound=EventData)

# Decoded events with the records they came from, in the order they were polled.
Decoded = list[tuple[KafkaRecord, Event[Any]]]


class DependencyUnavailable(Exception):
    """Raised by a handler when something it needs is down: retry later, never dead-letter."""


class UnprocessableEvent(Exception):
    """Raised by a handler when an event can never be handled as it is (it names a template
    that does not exist, say): it goes to the DLQ at once, without retries.

    Unlike an unexpected error, it says nothing about the handler's dependencies, so a run of
    them is not taken for an outage.
    """


@dataclass
class Batch:
    """What a handler gets: new events in order, the transaction's session, and the outbox."""

    events: list[Event[Any]]
    session: AsyncSession
    emitted: list[Event[Any]] = field(default_factory=list)
    # Each incoming `traceparent`'s continuation by this consumer's span (tracing on only).
    traces: Mapping[str, str] = field(default_factory=dict)

    def of_type(self, model: type[D]) -> list[Event[D]]:
        return [event for event in self.events if isinstance(event.data, model)]

    def emit(self, event: Event[Any], *, cause: Event[Any] | None = None) -> None:
        """Publish an event when, and only if, this batch's transaction commits."""
        if cause is not None and event.traceparent is None and cause.traceparent:
            event = dataclasses.replace(event, traceparent=self.traceparent_of(cause))
        self.emitted.append(event)

    def traceparent_of(self, event: Event[Any]) -> str | None:
        """The trace context for what `event` causes: this batch's span in its trace when
        tracing is on, else the event's own `traceparent`."""
        if event.traceparent is None:
            return None
        return self.traces.get(event.traceparent, event.traceparent)


BatchHandler = Callable[[Batch], Awaitable[None]]
