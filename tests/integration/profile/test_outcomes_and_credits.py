"""The loop closed at profile: outcomes, conversion credits, journeys' change requests and
segment memberships."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from libs.common import topics
from libs.common.events import (
    BehaviorOccurred,
    ConversionAttributed,
    Event,
    JourneyRef,
    MessageClicked,
    MessageDelivered,
    MessageOpened,
    MessageSent,
    ProfileChangeRequested,
    ProfileUpdated,
    SegmentEntered,
    SegmentExited,
)
from tests.integration.profile.harness import ProfileService, at, unique
from tests.integration.profile.test_profile_service import identify
from tests.integration.support import publish, wait_for

pytestmark = pytest.mark.integration

_JOURNEY = JourneyRef(journey_id="jrn_tests", journey_version=1, node_id="send_email")


def _outcome(model: type[Any], profile_id: str, minutes: float, **extra: Any) -> Event[Any]:
    data = model(
        message_id="msg_tests",
        request_id="req_tests",
        profile_id=profile_id,
        channel="email",
        journey=_JOURNEY,
        template_id="tpl_tests",
        occurred_at=at(minutes),
        **extra,
    )
    return Event(data=data, key=profile_id, source="tests")


async def _profile_by_id(service: ProfileService, profile_id: str) -> dict[str, Any]:
    response = await service.client.get(f"/profiles/{profile_id}")
    response.raise_for_status()
    profile: dict[str, Any] = response.json()
    return profile


async def test_outcomes_and_credits_become_engagement_and_attributed_revenue(
    profile_service: ProfileService,
) -> None:
    user_id = unique("user")
    await profile_service.publish(identify(user_id, 0, email=f"{user_id}@example.com"))
    profile_id = (await profile_service.wait_for_profile(f"user_id:{user_id}"))["id"]
    credit = ConversionAttributed(
        conversion_id=unique("cnv"),
        conversion_name="order_completed",
        profile_id=profile_id,
        value=Decimal("129.90"),
        currency="CNY",
        message_id="msg_tests",
        channel="email",
        attribution_model="last_touch",
        credit_share=1.0,
        occurred_at=at(30),
    )
    await publish(
        profile_service.stack.kafka_bootstrap,
        [
            _outcome(MessageSent, profile_id, 1),
            _outcome(MessageDelivered, profile_id, 2),
            _outcome(MessageOpened, profile_id, 10),
            _outcome(MessageClicked, profile_id, 11, url="https://shop.example.com/p"),
            Event(data=credit, key=profile_id, source="tests"),
        ],
    )
    engagement: dict[str, Any] = {}

    async def credited() -> bool:
        # Outcomes and credits come on two topics, in no order against each other: wait for both.
        engagement.update((await _profile_by_id(profile_service, profile_id))["engagement"])
        clicked = engagement["by_channel"].get("email", {}).get("clicked", 0)
        return bool(engagement["attributed_revenue"]) and clicked >= 1

    await wait_for(credited, within=90, what="the credit on the profile")
    assert engagement["by_channel"] == {
        "email": {"sent": 1, "delivered": 1, "opened": 1, "clicked": 1}
    }
    assert engagement["last_engaged_at"].startswith(at(11).isoformat()[:19])
    assert engagement["attributed_revenue"] == {"CNY": 129.9}
    updates = await profile_service.events_on(topics.PROFILE, profile_id=profile_id)
    scores = {
        change.field: change.after
        for event in updates
        if isinstance(event.data, ProfileUpdated)
        for change in event.data.changes
        if change.field.startswith("scores.")
    }
    assert scores["scores.email_clicked"] == 1
    assert scores["scores.attributed_revenue"] == pytest.approx(129.9)


async def test_a_change_request_sets_traits_and_tags_by_event_time(
    profile_service: ProfileService,
) -> None:
    user_id = unique("user")
    await profile_service.publish(identify(user_id, 0, plan="basic", tags="tea_lover,dormant"))
    profile_id = (await profile_service.wait_for_profile(f"user_id:{user_id}"))["id"]
    request = ProfileChangeRequested(
        request_id=unique("upd"),
        profile_id=profile_id,
        set_traits={"winback_offer": "TEA-15"},
        unset_traits=["plan"],
        add_tags=["winback"],
        remove_tags=["dormant"],
        journey=_JOURNEY,
        occurred_at=at(0) + timedelta(minutes=5),
    )
    await publish(
        profile_service.stack.kafka_bootstrap, [Event(data=request, key=profile_id, source="t")]
    )
    profile: dict[str, Any] = {}

    async def changed() -> bool:
        profile.update(await _profile_by_id(profile_service, profile_id))
        return "winback_offer" in profile["traits"]

    await wait_for(changed, within=90, what="the change request applied")
    assert "plan" not in profile["traits"]
    assert profile["tags"] == ["tea_lover", "winback"]


async def _identified(service: ProfileService, **traits: Any) -> tuple[str, BehaviorOccurred]:
    """A new person's profile id, and the behaviour of the identify that made it."""
    call = identify(unique("user"), 0, **traits)
    await service.publish(call)
    [event] = await service.wait_for_events(topics.BEHAVIOR, message_id=call.message_id)
    assert isinstance(event.data, BehaviorOccurred)
    return event.data.profile_id, event.data


async def test_a_click_is_announced_in_a_profile_updated_and_the_identify_before_it_is_not(
    profile_service: ProfileService,
) -> None:
    profile_id, behaviour = await _identified(profile_service, plan="premium")
    assert "traits.plan" in {change.field for change in behaviour.profile_changes}
    click = _outcome(MessageClicked, profile_id, 11, url="https://shop.example.com/p")
    await publish(profile_service.stack.kafka_bootstrap, [click])

    [update] = await profile_service.wait_for_events(topics.PROFILE, caused_by=click.id)
    assert isinstance(update.data, ProfileUpdated) and update.key == profile_id
    changed = {change.field: change.after for change in update.data.changes}
    assert changed["scores.email_clicked"] == 1
    assert changed["scores.last_engaged_at"] == at(11).timestamp()
    assert not any(name.startswith("traits.") for name in changed)
    updates = await profile_service.events_on(topics.PROFILE, profile_id=profile_id)
    assert [event.id for event in updates if isinstance(event.data, ProfileUpdated)] == [
        update.id
    ], "the identify's changes travelled with its behaviour, not in a profile.updated"


async def test_a_segment_membership_is_kept_on_the_profile_and_announces_nothing(
    profile_service: ProfileService,
) -> None:
    profile_id, _ = await _identified(profile_service, plan="basic")
    segment_id = unique("seg_vip")
    membership = SegmentEntered(
        segment_id=segment_id,
        segment_version=3,
        profile_id=profile_id,
        occurred_at=at(1),
        reason="realtime",
    )
    await publish(
        profile_service.stack.kafka_bootstrap, [Event(data=membership, key=profile_id, source="t")]
    )

    async def a_member() -> bool:
        segments = (await _profile_by_id(profile_service, profile_id))["segments"]
        return bool(segments == {segment_id: 3})

    await wait_for(a_member, within=90, what="the membership on the profile")
    updates = await profile_service.updates_up_to_a_change_request(profile_id)
    assert len(updates) == 1, "only the change request's: neither the identify nor the membership"
    assert "segments" not in {change.field for change in updates[0].data.changes}


async def test_memberships_of_a_merged_profile_are_kept_on_its_survivor(
    profile_service: ProfileService,
) -> None:
    first, second, device = unique("user"), unique("user"), unique("device")
    await profile_service.publish(identify(first, 0, anonymous_id=device))
    survivor = (await profile_service.wait_for_profile(f"user_id:{first}"))["id"]
    await profile_service.publish(identify(second, 1))
    merged = (await profile_service.wait_for_profile(f"user_id:{second}"))["id"]
    await profile_service.publish(identify(second, 2, anonymous_id=device))

    async def one_person() -> bool:
        found = await profile_service.profile_of(f"user_id:{second}")
        return found is not None and found["id"] == survivor

    await wait_for(one_person, within=60, what="the second profile merged into the first")
    kept, left = unique("seg_vip"), unique("seg_new")
    membership = {"profile_id": merged, "occurred_at": at(3), "reason": "realtime"}
    await publish(
        profile_service.stack.kafka_bootstrap,
        [
            Event(SegmentEntered(segment_id=kept, segment_version=2, **membership), merged, "t"),
            Event(SegmentEntered(segment_id=left, segment_version=1, **membership), merged, "t"),
            Event(SegmentExited(segment_id=left, segment_version=1, **membership), merged, "t"),
        ],
    )

    async def on_the_survivor() -> bool:
        segments = (await _profile_by_id(profile_service, survivor))["segments"]
        return bool(segments == {kept: 2})

    await wait_for(on_the_survivor, within=60, what="the memberships on the survivor")
