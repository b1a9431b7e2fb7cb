"""One batch through the profile handler's work, without the database: which of its events carry
a profile's changes — the behaviour of the last call, or a `profile.updated` — and in what order.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest
from aiokafka.errors import KafkaConnectionError
from sqlalchemy.ext.asyncio import AsyncSession

from libs.common.bus import Batch, DependencyUnavailable
from libs.common.events import (
    BehaviorOccurred,
    Event,
    IngestAlias,
    IngestIdentify,
    IngestTrack,
    JourneyRef,
    MessageClicked,
    ProfileMerged,
    ProfileUpdated,
    SegmentEntered,
)
from services.profile.features import FeatureRules
from services.profile.handlers import (
    _behaviour_partitions,
    _ProfileWork,
    _split,
    memberships_at_end,
)
from services.profile.identity import Identifier, IdentityGraph, call_identity
from services.profile.state import Observation, ProfileState
from tests import events as builders

RULES = FeatureRules()
T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)
KNOWN = "prf_01JPB6W3K8N2X4Q7R9T0V5Y1ZC"  # known before the batch, as user u1
OTHER = "prf_01JPB6W3K8N2X4Q7R9T0V5Y1ZD"  # known before the batch, as user u2
_ids = itertools.count()


def _timing(minutes: float) -> dict[str, Any]:
    moment = T0 + timedelta(minutes=minutes)
    return {"timestamp": moment, "receivedAt": moment, "sourceId": "src_tests"}


def _call(data: Any) -> Event[Any]:
    return Event(data=data, key=data.user_id or "", source="tests", id=data.message_id)


def identify(user_id: str, minutes: float, **traits: Any) -> Event[IngestIdentify]:
    data = IngestIdentify(
        messageId=f"identify-{next(_ids)}", userId=user_id, traits=traits, **_timing(minutes)
    )
    return _call(data)


def track(user_id: str, event: str, minutes: float, **properties: Any) -> Event[IngestTrack]:
    data = IngestTrack(
        messageId=f"track-{next(_ids)}",
        userId=user_id,
        event=event,
        properties=properties,
        **_timing(minutes),
    )
    return _call(data)


def alias(user_id: str, previous_id: str, minutes: float) -> Event[IngestAlias]:
    data = IngestAlias(
        messageId=f"alias-{next(_ids)}", userId=user_id, previousId=previous_id, **_timing(minutes)
    )
    return _call(data)


def clicked(profile_id: str, minutes: float) -> Event[MessageClicked]:
    return builders.clicked(
        profile_id,
        message_id="msg_tests",
        request_id="req_tests",
        journey=JourneyRef(journey_id="jrn_tests", journey_version=1, node_id="send"),
        template_id="tpl_tests",
        at=T0 + timedelta(minutes=minutes),
        url="https://shop.example.com/p",
    )


def entered(profile_id: str, segment_id: str, minutes: float) -> Event[SegmentEntered]:
    return builders.entered(profile_id, segment_id, at=T0 + timedelta(minutes=minutes))


def _known(created_at: float, **traits: Any) -> ProfileState:
    state = ProfileState()
    state.observe(Observation("identify", "identify", created_at, traits), RULES)
    return state


def run(events: Sequence[Event[Any]]) -> tuple[_ProfileWork, list[Event[Any]]]:
    """The batch through `_ProfileWork` as `profile_handler` runs it, from two profiles known
    before it: KNOWN (user u1, plan basic) and OTHER (user u2, city Hangzhou)."""
    calls, known, _ = _split(events)
    created = T0.timestamp() - 86_400
    work = _ProfileWork(
        graph=IdentityGraph(
            links={Identifier("user_id", "u1"): KNOWN, Identifier("user_id", "u2"): OTHER},
            created_at={KNOWN: created, OTHER: created + 1},
        ),
        profiles={
            KNOWN: _known(created, plan="basic"),
            OTHER: _known(created + 1, city="Hangzhou"),
        },
        identities=[call_identity(call.data, ()) for call in calls],
        rules=RULES,
        current={KNOWN: KNOWN, OTHER: OTHER},
        as_of=T0.timestamp() + 3600,
    )
    batch = Batch(events=list(events), session=cast(AsyncSession, None))
    for call, identity in zip(calls, work.identities, strict=True):
        work.apply(call, identity, batch)
    work.apply_to_known_profiles(known)
    work.emit_updates(batch)
    return work, batch.emitted


def _behaviours(emitted: Sequence[Event[Any]]) -> list[BehaviorOccurred]:
    return [event.data for event in emitted if isinstance(event.data, BehaviorOccurred)]


def _updates(emitted: Sequence[Event[Any]]) -> list[ProfileUpdated]:
    return [event.data for event in emitted if isinstance(event.data, ProfileUpdated)]


def _changed(changes: Sequence[Any]) -> dict[str, tuple[Any, Any]]:
    return {change.field: (change.before, change.after) for change in changes}


def test_a_call_that_changes_traits_carries_them_on_its_behaviour_and_no_profile_updated() -> None:
    call = identify("u1", 1, plan="premium")
    _, emitted = run([call])

    [behaviour] = _behaviours(emitted)
    assert behaviour.message_id == call.id and behaviour.profile_id == KNOWN
    assert _changed(behaviour.profile_changes)["traits.plan"] == ("basic", "premium")
    assert _updates(emitted) == []
    assert [event.key for event in emitted] == [KNOWN]


def test_two_calls_of_a_profile_in_a_batch_put_its_changes_on_the_last_behaviour() -> None:
    first, last = identify("u1", 1, plan="premium"), track("u1", "order_completed", 2, revenue=9.9)
    _, emitted = run([first, last])

    assert [b.message_id for b in _behaviours(emitted)] == [first.id, last.id]
    carried_first, carried_last = (b.profile_changes for b in _behaviours(emitted))
    assert carried_first == []  # the batch's changes are one aggregate, on the last call's
    changed = _changed(carried_last)
    assert changed["traits.plan"] == ("basic", "premium")  # the first call's
    assert changed["scores.rfm"][0] is None and changed["scores.rfm"][1] is not None  # the last's
    assert _updates(emitted) == []


def test_calls_of_two_profiles_each_carry_their_own_profiles_changes_in_call_order() -> None:
    calls = [identify("u1", 1, plan="premium"), identify("u2", 1, city="Shanghai")]
    _, emitted = run(calls)

    behaviours = _behaviours(emitted)
    assert [(b.message_id, b.profile_id) for b in behaviours] == [
        (calls[0].id, KNOWN),
        (calls[1].id, OTHER),
    ]
    assert _changed(behaviours[0].profile_changes) == {"traits.plan": ("basic", "premium")}
    assert _changed(behaviours[1].profile_changes) == {"traits.city": ("Hangzhou", "Shanghai")}
    assert _updates(emitted) == []


def test_a_profile_last_changed_by_an_outcome_is_announced_in_a_profile_updated() -> None:
    # KNOWN's call, then a click on KNOWN: the click came last, so KNOWN's changes (the call's
    # with it) go out in a profile.updated it caused. OTHER's call came last for OTHER.
    call, click = identify("u1", 1, plan="premium"), clicked(KNOWN, 2)
    other = identify("u2", 3, city="Shanghai")
    _, emitted = run([call, click, other])

    assert [(type(e.data), e.key) for e in emitted] == [
        (BehaviorOccurred, KNOWN),
        (BehaviorOccurred, OTHER),
        (ProfileUpdated, KNOWN),  # after the behaviour it follows
    ]
    known, of_other = _behaviours(emitted)
    assert known.profile_changes == []
    assert _changed(of_other.profile_changes) == {"traits.city": ("Hangzhou", "Shanghai")}
    [update] = _updates(emitted)
    assert update.profile_id == KNOWN and update.caused_by == click.id
    changed = _changed(update.changes)
    assert changed["traits.plan"] == ("basic", "premium")
    assert changed["scores.email_clicked"] == (None, 1)


def test_a_membership_is_recorded_apart_and_announces_nothing() -> None:
    events = [entered(KNOWN, "seg_vip", 1)]
    work, emitted = run(events)
    assert emitted == []
    assert work.profiles[KNOWN].segments == {}  # the state is not read for it
    assert memberships_at_end(_split(events)[2]) == {(KNOWN, "seg_vip"): 1}


def test_a_batch_records_each_membership_as_its_last_event_left_it() -> None:
    events: list[Event[Any]] = [
        entered(KNOWN, "seg_vip", 1),
        builders.exited(KNOWN, "seg_vip"),
        entered(OTHER, "seg_vip", 2),
        builders.exited(OTHER, "seg_new"),
    ]
    assert memberships_at_end(_split(events)[2]) == {
        (KNOWN, "seg_vip"): None,
        (OTHER, "seg_vip"): 1,
        (OTHER, "seg_new"): None,
    }


def test_a_membership_after_a_call_leaves_the_calls_changes_on_its_behaviour() -> None:
    call = identify("u1", 1, plan="premium")
    _, emitted = run([call, entered(KNOWN, "seg_vip", 2)])

    [behaviour] = _behaviours(emitted)
    assert _changed(behaviour.profile_changes) == {"traits.plan": ("basic", "premium")}
    assert _updates(emitted) == []


def test_an_alias_has_no_behaviour_so_a_merge_it_makes_is_announced_in_a_profile_updated() -> None:
    # The alias merges OTHER into KNOWN and is the last to touch KNOWN; a new person's identify
    # in the same batch carries what it made of its new profile.
    joining, newcomer = alias("u1", "u2", 3), identify("u3", 4, plan="trial")
    _, emitted = run([joining, newcomer])

    [merge] = [event.data for event in emitted if isinstance(event.data, ProfileMerged)]
    assert (merge.survivor_id, merge.merged_ids) == (KNOWN, [OTHER])
    [update] = _updates(emitted)
    assert update.profile_id == KNOWN and update.caused_by == joining.id
    assert _changed(update.changes)["traits.city"] == (None, "Hangzhou")
    [behaviour] = _behaviours(emitted)
    assert behaviour.message_id == newcomer.id and behaviour.profile_id not in (KNOWN, OTHER)
    assert _changed(behaviour.profile_changes)["traits.plan"] == (None, "trial")


def test_a_merge_by_the_last_call_carries_the_survivors_changes_on_its_behaviour() -> None:
    # A call of OTHER, an alias merging it into KNOWN, then a call of KNOWN: that last call's
    # behaviour carries what the merge changed; the first one's profile is gone.
    before_merge = track("u2", "viewed", 1)
    joining, after = alias("u1", "u2", 2), track("u1", "viewed", 3)
    _, emitted = run([before_merge, joining, after])

    behaviours = _behaviours(emitted)
    assert [(b.message_id, b.profile_id) for b in behaviours] == [
        (before_merge.id, OTHER),
        (after.id, KNOWN),
    ]
    assert behaviours[0].profile_changes == []
    assert _changed(behaviours[1].profile_changes)["traits.city"] == (None, "Hangzhou")
    assert _updates(emitted) == []


async def test_a_broker_that_cannot_say_behaviours_partitions_is_an_outage_not_poison() -> None:
    async def broker_away(topic: str) -> int:
        raise KafkaConnectionError(f"no metadata for {topic}")

    async def twelve(topic: str) -> int:
        return 12

    assert await _behaviour_partitions(twelve) == 12
    with pytest.raises(DependencyUnavailable, match=r"behavior\.v1"):
        await _behaviour_partitions(broker_away)
