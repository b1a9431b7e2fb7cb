"""The segment service as a process over the real broker and database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from tests.events import behaviour, erasure, identified, merge, profile_updated
from tests.integration.segment.harness import SegmentHarness
from tests.integration.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def expect_transitions(
    service: SegmentHarness, segment: str, expected: list[tuple[str, str, str]], within: float = 30
) -> None:
    """Per profile, in order: Kafka orders a profile's events, not events across partitions."""

    async def published() -> bool:
        return _by_profile(await service.transitions(segment)) == _by_profile(expected)

    try:
        await wait_for(published, within=within, what=f"{segment} transitions {expected}")
    except AssertionError:
        raise AssertionError(
            f"expected {expected}, got {await service.transitions(segment)}"
        ) from None


def _by_profile(transitions: list[tuple[str, str, str]]) -> dict[str, list[tuple[str, str]]]:
    grouped: dict[str, list[tuple[str, str]]] = {}
    for profile, verb, reason in transitions:
        grouped.setdefault(profile, []).append((verb, reason))
    return grouped


async def test_member_enters_leaves_regains_and_expires_with_its_window(
    segment_service: SegmentHarness,
) -> None:
    segment, profile = unique("seg_rt"), unique("prf_rt")
    created = await segment_service.create(
        segment,
        {
            "all": [
                {"trait": "plan", "op": "eq", "value": "premium"},
                {"event": "order_completed", "count": {"gte": 2}, "within": "PT10S"},
            ]
        },
    )
    assert created.status_code == 201, created.text
    ordered_at = datetime.now(UTC)
    await segment_service.publish(
        profile_updated(profile, traits={"plan": "premium"}),
        behaviour(profile, "order_completed", at=ordered_at - timedelta(seconds=1)),
        behaviour(profile, "order_completed", at=ordered_at),
    )
    entered = (profile, "entered", "realtime")
    exited = (profile, "exited", "realtime")
    await expect_transitions(segment_service, segment, [entered])

    await segment_service.publish(profile_updated(profile, traits={"plan": "basic"}))
    await expect_transitions(segment_service, segment, [entered, exited])

    await segment_service.publish(profile_updated(profile, traits={"plan": "premium"}))
    await expect_transitions(segment_service, segment, [entered, exited, entered])
    assert await segment_service.members(segment) == [profile]

    # No new event: the older order leaves the 10 s window and the timer takes the profile out.
    expired = (profile, "exited", "window_expired")
    await expect_transitions(segment_service, segment, [entered, exited, entered, expired])
    assert await segment_service.members(segment) == []


async def test_the_profile_changes_a_behaviour_carries_move_memberships(
    segment_service: SegmentHarness,
) -> None:
    """What a call changed travels with its behaviour, and no profile.updated follows; the
    entry carries the facts it entered with."""
    segment, profile, plan = unique("seg_call"), unique("prf_call"), unique("premium")
    created = await segment_service.create(segment, {"trait": "plan", "op": "eq", "value": plan})
    assert created.status_code == 201, created.text
    traits = {"plan": plan, "email": "call@example.com"}
    await segment_service.publish(identified(profile, traits=traits))
    entered = (profile, "entered", "realtime")
    await expect_transitions(segment_service, segment, [entered])
    assert await segment_service.members(segment) == [profile]
    [facts] = await segment_service.entry_facts(segment, profile)
    assert facts is not None and facts.traits == traits

    await segment_service.publish(identified(profile, traits={"plan": None}))
    await expect_transitions(segment_service, segment, [entered, (profile, "exited", "realtime")])
    assert await segment_service.members(segment) == []


async def test_preview_names_a_sample_of_the_matching_profiles_in_id_order(
    segment_service: SegmentHarness,
) -> None:
    plan = unique("sampled")
    first, second, third = sorted(unique("prf_sample") for _ in range(3))
    await segment_service.publish(
        *(profile_updated(profile, traits={"plan": plan}) for profile in (third, first, second))
    )
    conditions = {"trait": "plan", "value": plan}

    async def stored() -> bool:
        preview = await segment_service.http.post(
            "/segments/preview", json={"conditions": conditions}
        )
        return bool(preview.json()["count"] == 3)

    await wait_for(stored, within=30, what="the three profiles to be stored")
    preview = await segment_service.http.post(
        "/segments/preview", json={"conditions": conditions, "sample_size": 2}
    )
    assert preview.json()["count"] == 3
    assert preview.json()["sample"] == [first, second]
    unsampled = await segment_service.http.post(
        "/segments/preview", json={"conditions": conditions}
    )
    assert unsampled.json()["sample"] == []
    too_many = await segment_service.http.post(
        "/segments/preview", json={"conditions": conditions, "sample_size": 101}
    )
    assert too_many.status_code == 422
    assert too_many.json()["error"]["field"] == "body.sample_size"


async def test_creating_a_segment_evaluates_existing_profiles_in_bulk(
    segment_service: SegmentHarness,
) -> None:
    gold, silver = unique("gold"), unique("silver")
    buyer, other = unique("prf_buyer"), unique("prf_other")
    now = datetime.now(UTC)
    await segment_service.publish(
        profile_updated(buyer, traits={"plan": gold}),
        behaviour(buyer, "order_completed", at=now, properties={"category": "tea", "revenue": 120}),
        profile_updated(other, traits={"plan": silver}),
    )
    definition = {
        "all": [
            {"trait": "plan", "value": gold},
            {"event": "order_completed", "where": [{"property": "category", "value": "tea"}]},
        ]
    }

    async def stored() -> bool:
        preview = await segment_service.http.post(
            "/segments/preview",
            json={"conditions": {"trait": "plan", "op": "in", "value": [gold, silver]}},
        )
        return bool(preview.json()["count"] == 2)

    await wait_for(stored, within=30, what="both profiles to be stored")
    preview = await segment_service.http.post("/segments/preview", json={"conditions": definition})
    assert preview.json()["count"] == 1

    segment = unique("seg_bulk")
    created = await segment_service.create(segment, definition)
    assert created.status_code == 201, created.text
    assert created.json()["evaluation"] == {"entered": 1, "exited": 0}
    assert await segment_service.members(segment) == [buyer]
    await expect_transitions(segment_service, segment, [(buyer, "entered", "bulk")])

    changed = {"trait": "plan", "op": "in", "value": [silver]}
    replaced = await segment_service.http.put(
        f"/segments/{segment}", json={"name": "silver", "conditions": changed}
    )
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["version"] == 2
    assert replaced.json()["evaluation"] == {"entered": 1, "exited": 1}
    await expect_transitions(
        segment_service,
        segment,
        [(buyer, "entered", "bulk"), (other, "entered", "bulk"), (buyer, "exited", "bulk")],
    )
    renamed = await segment_service.http.put(
        f"/segments/{segment}", json={"name": "renamed", "conditions": changed}
    )
    assert renamed.json()["version"] == 2
    assert renamed.json()["evaluation"] is None

    deleted = await segment_service.http.delete(f"/segments/{segment}")
    assert deleted.status_code == 204
    assert (await segment_service.http.get(f"/segments/{segment}")).status_code == 404


async def test_members_are_paged_by_cursor(segment_service: SegmentHarness) -> None:
    tag = unique("tag")
    profiles = sorted(unique(f"prf_page{i}") for i in range(3))
    await segment_service.publish(*(profile_updated(p, changes={"tags": [tag]}) for p in profiles))
    segment = unique("seg_page")
    assert (await segment_service.create(segment, {"tag": tag})).status_code == 201

    async def all_in() -> bool:
        return await segment_service.members(segment) == profiles

    await wait_for(all_in, within=30, what="three members")
    first = (await segment_service.http.get(f"/segments/{segment}/members?limit=2")).json()
    assert [m["profile_id"] for m in first["members"]] == profiles[:2]
    second = (
        await segment_service.http.get(
            f"/segments/{segment}/members", params={"limit": 2, "cursor": first["next_cursor"]}
        )
    ).json()
    assert [m["profile_id"] for m in second["members"]] == profiles[2:]
    assert second["next_cursor"] is None


async def test_bad_definitions_and_requests_are_refused(segment_service: SegmentHarness) -> None:
    bad = await segment_service.create(
        unique("seg_bad"),
        {"all": [{"trait": "plan", "value": "x"}, {"event": "o", "within": "thirty days"}]},
    )
    assert bad.status_code == 422
    error = bad.json()["error"]
    assert error["code"] == "invalid_definition"
    assert error["field"] == "conditions.all[1].within"
    assert error["message"].startswith("conditions.all[1].within: not an ISO 8601 duration")

    segment = unique("seg_dup")
    assert (await segment_service.create(segment, {"tag": "x"})).status_code == 201
    assert (await segment_service.create(segment, {"tag": "x"})).status_code == 409
    selfish = unique("seg_self")
    itself = await segment_service.create(selfish, {"in_segment": selfish})
    assert itself.status_code == 422
    preview = await segment_service.http.post("/segments/preview", json={"conditions": {"x": 1}})
    assert preview.status_code == 422
    assert (await segment_service.http.get("/segments/nope/members")).status_code == 404
    anonymous = await segment_service.http.get("/segments", headers={"Authorization": ""})
    assert anonymous.status_code == 401


async def test_merged_profiles_are_judged_as_one_and_erased_profiles_leave_no_membership(
    segment_service: SegmentHarness,
) -> None:
    segment = unique("seg_merge")
    survivor, merged = unique("prf_survivor"), unique("prf_merged")
    # An event name of this test's own: other tests' profiles share the service and must not match.
    ordered = unique("order")
    created = await segment_service.create(
        segment,
        {
            "all": [
                {"trait": "plan", "op": "eq", "value": "premium"},
                {"event": ordered, "count": {"gte": 2}, "within": "P1D"},
            ]
        },
    )
    assert created.status_code == 201, created.text
    now = datetime.now(UTC)
    # Each half of the person matches half of the segment: premium here, the second order there.
    await segment_service.publish(
        profile_updated(survivor, traits={"plan": "premium"}),
        behaviour(survivor, ordered, at=now - timedelta(minutes=5)),
        behaviour(merged, ordered, at=now - timedelta(minutes=1)),
    )

    async def both_orders_seen() -> bool:
        preview = await segment_service.http.post(
            "/segments/preview",
            json={"conditions": {"event": ordered, "count": {"gte": 1}, "within": "P1D"}},
        )
        return preview.status_code == 200 and preview.json()["count"] == 2

    await wait_for(both_orders_seen, within=30, what="both orders stored")
    assert await segment_service.members(segment) == []

    await segment_service.publish(merge(survivor, merged, at=now))
    await expect_transitions(segment_service, segment, [(survivor, "entered", "realtime")])
    assert await segment_service.members(segment) == [survivor]

    await segment_service.publish(erasure(survivor, at=now))

    async def erased() -> bool:
        return await segment_service.members(segment) == []

    await wait_for(erased, within=30, what="the erased profile gone from the members")
