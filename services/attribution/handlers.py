"""The attribution handler: record touchpoints (message outcomes and campaign calls), credit
conversions, follow merges and erasures, and keep the KPI rollups, all in the batch's
transaction."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from libs.common.bus import Batch, BatchHandler
from libs.common.events import (
    BehaviorOccurred,
    ConversionAttributed,
    Event,
    JourneyRef,
    MessageClicked,
    MessageDelivered,
    MessageFailed,
    MessageOpened,
    MessageSent,
    MessageSuppressed,
    ProfileDeleted,
    ProfileMerged,
)
from services.attribution import metrics
from services.attribution.campaigns import campaign_touch
from services.attribution.credit import Credit, Touch, credits, touches_in_window
from services.attribution.definitions import conversion_id
from services.attribution.rollups import Rollups
from services.attribution.store import (
    AttributionStore,
    DefinitionRow,
    OutcomeRow,
    RecordedConversion,
)

SOURCE = "closeloop/attribution"

_OUTCOMES = (
    MessageSent,
    MessageDelivered,
    MessageOpened,
    MessageClicked,
    MessageSuppressed,
    MessageFailed,
)
_Outcome = (
    MessageSent
    | MessageDelivered
    | MessageOpened
    | MessageClicked
    | MessageSuppressed
    | MessageFailed
)

# What this handler reads; the consumer passes the rest of its topics over by their ce_type
# header (`profile.updated` among them: a change of a profile credits nothing).
ACCEPTED_TYPES = frozenset(
    {
        *(model.event_type for model in _OUTCOMES),
        BehaviorOccurred.event_type,
        ProfileMerged.event_type,
        ProfileDeleted.event_type,
    }
)


@dataclass(frozen=True)
class _Conversion:
    """A behaviour that matched a definition, with what its credits will be."""

    cause: Event[BehaviorOccurred]
    definition: DefinitionRow
    record: RecordedConversion
    credits: list[Credit]


def attribution_handler(schema: str) -> BatchHandler:
    async def handle(batch: Batch) -> None:
        store = AttributionStore(batch.session, schema)
        rollups = Rollups()
        # Outcomes first: a touch earlier in event time counts even when it shares the batch.
        await _record_outcomes(store, rollups, batch)
        await _record_campaign_touches(store, batch)
        await _credit_conversions(store, rollups, batch)
        for merge in batch.of_type(ProfileMerged):
            await store.move_profiles(merge.data.survivor_id, merge.data.merged_ids)
        erased = [event.data.profile_id for event in batch.of_type(ProfileDeleted)]
        if erased:
            await store.erase_profiles(erased)
        await store.add_rollups(rollups)

    return handle


async def _record_outcomes(store: AttributionStore, rollups: Rollups, batch: Batch) -> None:
    outcomes = [_outcome_row(event.data) for event in batch.events if _is_outcome(event)]
    for row in await store.record_outcomes(outcomes):
        rollups.count_outcome(row.outcome, row.touch, frequency_capped=row.frequency_capped)
        metrics.TOUCHPOINTS.labels(row.outcome).inc()


async def _record_campaign_touches(store: AttributionStore, batch: Batch) -> None:
    touches = [
        campaign_touch(b.message_id, b.profile_id, b.occurred_at, b.context)
        for b in (event.data for event in batch.of_type(BehaviorOccurred))
    ]
    await store.record_campaign_touches([touch for touch in touches if touch is not None])


async def _credit_conversions(store: AttributionStore, rollups: Rollups, batch: Batch) -> None:
    behaviours = batch.of_type(BehaviorOccurred)
    if not behaviours:
        return
    definitions = await store.definitions_for({event.data.event for event in behaviours})
    matches = [
        (event, definition)
        for event in behaviours
        for definition in definitions
        if definition.definition.matches(event.data.event, event.data.properties)
    ]
    if not matches:
        return
    since = min(event.data.occurred_at - row.definition.window for event, row in matches)
    until = max(event.data.occurred_at for event, _ in matches)
    touches = await store.touches({event.data.profile_id for event, _ in matches}, since, until)
    conversions = [
        _conversion(event, row, touches.get(event.data.profile_id, [])) for event, row in matches
    ]
    new = await store.record_conversions([c.record for c in conversions])
    for conversion in conversions:
        if conversion.record.conversion_id in new:
            _emit_credits(batch, rollups, conversion)


def _conversion(
    cause: Event[BehaviorOccurred],
    row: DefinitionRow,
    touches: Sequence[tuple[str, Touch]],
) -> _Conversion:
    definition = row.definition
    behaviour = cause.data
    value, currency = definition.worth(behaviour.properties)
    eligible = [touch for outcome, touch in touches if outcome in definition.touch_types]
    in_window = touches_in_window(eligible, behaviour.occurred_at, definition.window)
    credited = credits(
        definition.attribution_model,
        in_window,
        behaviour.occurred_at,
        half_life=definition.half_life,
    )
    record = RecordedConversion(
        # The client's messageId, not the ce_id: profile re-emitting the behaviour under a new
        # event id must still name the same conversion.
        conversion_id=conversion_id(behaviour.message_id, row.id),
        definition_id=row.id,
        profile_id=behaviour.profile_id,
        occurred_at=behaviour.occurred_at,
        value=value,
        currency=currency,
        attribution_model=definition.attribution_model,
        credits=[{"message_id": c.touch.message_id, "share": c.share} for c in credited],
    )
    return _Conversion(cause, row, record, credited)


def _emit_credits(batch: Batch, rollups: Rollups, conversion: _Conversion) -> None:
    record, name = conversion.record, conversion.definition.definition.name
    rollups.count_conversion(
        record.definition_id,
        record.occurred_at,
        attributed=bool(conversion.credits),
        value=record.value,
        currency=record.currency,
    )
    metrics.CONVERSIONS.labels(name, "attributed" if conversion.credits else "unattributed").inc()
    for credit in conversion.credits:
        rollups.count_credit(
            credit.touch, record.occurred_at, credit.share, record.value, record.currency
        )
        batch.emit(_attributed(record, name, credit), cause=conversion.cause)
        metrics.CREDITS.labels(record.attribution_model).inc()
        if record.value is not None and record.currency is not None:
            metrics.REVENUE.labels(record.currency).inc(float(record.value) * credit.share)


def _attributed(record: RecordedConversion, name: str, credit: Credit) -> Event[Any]:
    touch = credit.touch
    data = ConversionAttributed(
        conversion_id=record.conversion_id,
        conversion_name=name,
        profile_id=record.profile_id,
        value=record.value,
        currency=record.currency,
        message_id=touch.message_id,
        journey=JourneyRef(
            journey_id=touch.journey_id,
            journey_version=touch.journey_version,
            node_id=touch.node_id,
        ),
        template_id=touch.template_id,
        variant_id=touch.variant_id,
        channel=touch.channel,
        attribution_model=record.attribution_model,
        credit_share=min(credit.share, 1.0),
        occurred_at=record.occurred_at,
    )
    return Event(data=data, key=record.profile_id, source=SOURCE)


def _is_outcome(event: Event[Any]) -> bool:
    return isinstance(event.data, _OUTCOMES)


def _outcome_row(data: _Outcome) -> OutcomeRow:
    return OutcomeRow(
        profile_id=data.profile_id,
        outcome=data.event_type,
        touch=Touch(
            message_id=data.message_id,
            occurred_at=data.occurred_at,
            channel=data.channel,
            journey_id=data.journey.journey_id,
            journey_version=data.journey.journey_version,
            node_id=data.journey.node_id,
            template_id=data.template_id,
            variant_id=data.variant_id,
        ),
        template_version=data.template_version,
        frequency_capped=isinstance(data, MessageSuppressed) and data.reason == "frequency_cap",
    )
