"""Know the customer: calls to ingest become one profile and real-time segment memberships."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from segment.analytics import Client  # type: ignore[import-untyped]  # ships no types

from libs.common import topics
from libs.common.events import ProfileMerged
from tests.integration.loop.harness import Loop, unique
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration

WINDOW = timedelta(seconds=8)
ENTERED = ("entered", "realtime")
EXITED = ("exited", "realtime")
EXPIRED = ("exited", "window_expired")


def premium_repeat_buyers() -> dict[str, Any]:
    return {
        "all": [
            {"trait": "plan", "op": "eq", "value": "premium"},
            {
                "event": "order_completed",
                "count": {"gte": 2},
                "within": f"PT{WINDOW.seconds}S",
            },
        ]
    }


async def test_visitor_who_identifies_as_premium_and_orders_twice_is_segmented_in_real_time(
    loop: Loop,
) -> None:
    anonymous_id, user_id = unique("anon"), unique("user")
    email = f"{user_id}@example.com"
    segment_id = unique("seg_premium_buyers")
    assert (await loop.create_segment(segment_id, premium_repeat_buyers()))["version"] == 1
    started, started_at = time.monotonic(), datetime.now(UTC)

    # Anonymous browsing makes one profile; the same person's app, signed in, makes another.
    for name in ("Home", "Pricing"):
        now = datetime.now(UTC).isoformat()
        await loop.send("page", anonymousId=anonymous_id, name=name, timestamp=now)
    anonymous = await loop.wait_for_profile(
        f"anonymous_id:{anonymous_id}", counted={"Home": 1, "Pricing": 1}
    )
    now = datetime.now(UTC).isoformat()
    await loop.send("track", userId=user_id, event="app_opened", timestamp=now)
    signed_in = await loop.wait_for_profile(f"user_id:{user_id}", counted={"app_opened": 1})
    assert signed_in["id"] != anonymous["id"]

    # identify names both ids: the profiles merge into the older one, the anonymous visitor's.
    identified = await loop.send(
        "identify",
        userId=user_id,
        anonymousId=anonymous_id,
        traits={"plan": "premium", "email": email},
        timestamp=datetime.now(UTC).isoformat(),
    )
    profile = await loop.wait_for_profile(
        f"user_id:{user_id}", counted={"Home": 1, "app_opened": 1, "identify": 1}
    )
    profile_id = profile["id"]
    assert profile_id == anonymous["id"]
    assert profile["traits"] == {"plan": "premium", "email": email}
    assert {f"anonymous_id:{anonymous_id}", f"user_id:{user_id}", f"email:{email}"} <= set(
        profile["identifiers"]
    )
    for identifier in (f"anonymous_id:{anonymous_id}", f"email:{email}"):
        assert (await loop.profile_of(identifier) or {}).get("id") == profile_id, identifier
    redirect = await loop.profile.get(f"/profiles/{signed_in['id']}")
    assert redirect.status_code == 308
    assert redirect.headers["location"] == f"/profiles/{profile_id}"
    merges = [
        event
        for event in await loop.events_on(topics.PROFILE)
        if isinstance(event.data, ProfileMerged) and event.data.caused_by == identified
    ]
    assert [(event.key, event.data.survivor_id, event.data.merged_ids) for event in merges] == [
        (profile_id, profile_id, [signed_in["id"]])
    ]
    identified_after = time.monotonic() - started

    # Two orders, keyed by the user id, land on the merged profile and put it in the segment.
    ordered_at: list[datetime] = []
    for revenue in (30, 45):
        ordered_at.append(datetime.now(UTC))
        await loop.send(
            "track",
            userId=user_id,
            event="order_completed",
            properties={"revenue": revenue},
            timestamp=ordered_at[-1].isoformat(),
        )
    second_order_sent = datetime.now(UTC)
    entered = (await loop.wait_for_transitions(segment_id, profile_id, [ENTERED], within=6))[0]
    entered_after = time.monotonic() - started
    assert await loop.members(segment_id) == [profile_id]

    # The profile service consumes segment.v1 too: the membership comes back onto the profile.
    async def on_profile() -> bool:
        current = await loop.profile_of(f"user_id:{user_id}")
        return current is not None and current["segments"] == {segment_id: 1}

    await wait_for(on_profile, within=5, what=f"{segment_id} on the profile")

    # Downgrading leaves the segment at once; upgrading again rejoins it, in real time.
    for plan, expected in (("basic", [ENTERED, EXITED]), ("premium", [ENTERED, EXITED, ENTERED])):
        now = datetime.now(UTC).isoformat()
        await loop.send("identify", userId=user_id, traits={"plan": plan}, timestamp=now)
        await loop.wait_for_transitions(segment_id, profile_id, expected, within=6)
    assert await loop.members(segment_id) == [profile_id]

    # Nothing more happens: once the first order is older than the window, the timer takes
    # the profile out.
    transitions = await loop.wait_for_transitions(
        segment_id, profile_id, [ENTERED, EXITED, ENTERED, EXPIRED], within=20
    )
    expired = transitions[-1]
    assert abs(expired.occurred_at - (ordered_at[0] + WINDOW)) < timedelta(milliseconds=1)
    assert {(t.profile_id, t.segment_version) for t in transitions} == {(profile_id, 1)}
    assert await loop.members(segment_id) == []

    print(
        f"\nknow-the-customer: user={user_id} anon={anonymous_id} profile={profile_id} "
        f"merged={signed_in['id']} segment={segment_id}; "
        f"first call -> merged profile {identified_after:.2f}s, "
        f"first call -> segment.entered seen {entered_after:.2f}s "
        f"(published {(entered.published_at - started_at).total_seconds():.2f}s), "
        f"2nd order sent -> segment.entered published "
        f"{(entered.published_at - second_order_sent).total_seconds():.3f}s, "
        f"window end -> window_expired published "
        f"{(expired.published_at - expired.occurred_at).total_seconds():.2f}s"
    )


async def test_segment_python_client_calls_show_on_the_profile(loop: Loop) -> None:
    user_id = unique("sdk_user")
    email = f"{user_id}@example.com"
    errors: list[Exception] = []
    analytics = Client(
        write_key=loop.write_key,
        host=loop.ingest_url,
        sync_mode=True,
        max_retries=0,
        on_error=lambda error, _: errors.append(error),
    )
    identify_id, order_id, view_id = unique("sdk"), unique("sdk"), unique("sdk")

    def send() -> None:
        analytics.identify(
            user_id, {"plan": "premium", "email": email, "tags": "vip"}, message_id=identify_id
        )
        analytics.track(
            user_id, "product_viewed", {"category": "tea", "sku": "T-1"}, message_id=view_id
        )
        analytics.track(
            user_id, "order_completed", {"revenue": 64.95, "category": "tea"}, message_id=order_id
        )

    started = time.monotonic()
    await asyncio.to_thread(send)
    assert errors == []

    profile = await loop.wait_for_profile(
        f"user_id:{user_id}", counted={"identify": 1, "product_viewed": 1, "order_completed": 1}
    )
    seen_after = time.monotonic() - started
    assert profile["counters"] == {"identify": 1, "product_viewed": 1, "order_completed": 1}
    assert profile["traits"] == {"plan": "premium", "email": email, "tags": "vip"}
    assert profile["tags"] == ["vip"]
    assert (profile["orders"], profile["revenue"]) == (1, 64.95)
    assert profile["top_categories"] == ["tea"]
    assert (await loop.profile_of(f"email:{email}") or {}).get("id") == profile["id"]

    response = await loop.profile.get(f"/profiles/{profile['id']}/events")
    assert response.status_code == 200, response.text
    events = {event["message_id"]: event for event in response.json()["events"]}
    assert {message_id: events[message_id]["event"] for message_id in events} == {
        identify_id: "identify",
        view_id: "product_viewed",
        order_id: "order_completed",
    }
    assert events[order_id]["properties"] == {"revenue": 64.95, "category": "tea"}
    print(
        f"\nsegment sdk: user={user_id} profile={profile['id']} on the profile in {seen_after:.2f}s"
    )
