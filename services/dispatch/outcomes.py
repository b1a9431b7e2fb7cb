"""The outcome events of a send, each carrying the message's whole lineage."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from libs.common.events import Event, EventData, JourneyRef
from services.dispatch.store import LedgerRow

SOURCE = "closeloop/dispatch"
OutcomeT = TypeVar("OutcomeT", bound=EventData)


def outcome(
    model: type[OutcomeT], row: LedgerRow, occurred_at: datetime, **extra: Any
) -> Event[OutcomeT]:
    """`model` (message.sent, .failed, …) for the ledger row, keyed by its profile."""
    data = model(
        message_id=row.message_id,
        request_id=row.request_id,
        profile_id=row.profile_id,
        channel=row.channel,
        journey=JourneyRef.model_validate(row.journey),
        template_id=row.template_id,
        template_version=row.template_version,
        variant_id=row.variant_id,
        occurred_at=occurred_at,
        **extra,
    )
    return Event(data=data, key=row.profile_id, source=SOURCE, traceparent=row.traceparent)
