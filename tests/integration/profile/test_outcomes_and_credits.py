"""The loop closed at profile: outcomes, conversion credits and journeys' change requests."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from libs.common import topics
from libs.common.events import (
    ConversionAttributed,
    Event,
    JourneyRef,
    MessageClicked,
    MessageDelivered,
    MessageOpened,
    MessageSent,
    ProfileChangeRequested,
    ProfileUpdated,
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
