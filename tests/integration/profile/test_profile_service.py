"""The profile service over the real broker and database: identity, traits, erasure, REST."""

from __future__ import annotations

from typing import Any

import pytest

from libs.common import topics
from libs.common.events import (
    BehaviorOccurred,
    IngestIdentify,
    IngestPage,
    IngestTrack,
    ProfileDeleted,
    ProfileMerged,
)
from tests.integration.profile.harness import ProfileService, timing, unique
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration


def page(anonymous_id: str, minutes: float, **fields: Any) -> IngestPage:
    return IngestPage(
        messageId=unique("page"), anonymousId=anonymous_id, **timing(minutes), **fields
    )


def identify(
    user_id: str, minutes: float, anonymous_id: str | None = None, **traits: Any
) -> IngestIdentify:
    return IngestIdentify(
        messageId=unique("identify"),
        userId=user_id,
        anonymousId=anonymous_id,
        traits=traits,
        **timing(minutes),
    )


def track(user_id: str, event: str, minutes: float, **properties: Any) -> IngestTrack:
    return IngestTrack(
        messageId=unique("track"),
        userId=user_id,
        event=event,
        properties=properties,
        **timing(minutes),
    )


async def test_identify_after_anonymous_pages_merges_them_into_one_profile(
    profile_service: ProfileService,
) -> None:
    anonymous_id, user_id = unique("anon"), unique("user")
    pages = [
        page(anonymous_id, 0, name="Home"),
        page(anonymous_id, 1, properties={"category": "tea"}),
    ]
    await profile_service.publish(*pages)
    anonymous = await profile_service.wait_for_profile(f"anonymous_id:{anonymous_id}", counted=2)
    await profile_service.publish(identify(user_id, 5, email="Li@Example.com"))
    known = await profile_service.wait_for_profile(f"user_id:{user_id}")
    assert known["id"] != anonymous["id"]

    linking = identify(user_id, 6, anonymous_id, plan="premium")
    await profile_service.publish(linking)
    merged = await profile_service.wait_for_profile(f"user_id:{user_id}", counted=4)

    assert merged["id"] == anonymous["id"], "the oldest profile survives"
    assert {f"anonymous_id:{anonymous_id}", f"user_id:{user_id}", "email:li@example.com"} <= set(
        merged["identifiers"]
    )
    assert merged["counters"] == {"Home": 1, "page": 1, "identify": 2}
    assert merged["traits"] == {"email": "Li@Example.com", "plan": "premium"}
    assert merged["top_categories"] == ["tea"]
    assert await profile_service.profile_of(f"anonymous_id:{anonymous_id}") == merged

    redirect = await profile_service.client.get(f"/profiles/{known['id']}")
    assert redirect.status_code == 308
    assert redirect.headers["location"] == f"/profiles/{merged['id']}"

    merges = await profile_service.events_on(topics.PROFILE, caused_by=linking.message_id)
    merge = [event for event in merges if isinstance(event.data, ProfileMerged)]
    assert len(merge) == 1 and merge[0].key == merged["id"]
    assert merge[0].data.survivor_id == merged["id"]
    assert merge[0].data.merged_ids == [known["id"]]
    assert merge[0].data.reason == "identify"

    behaviour = await profile_service.events_on(topics.BEHAVIOR, message_id=linking.message_id)
    assert [event.key for event in behaviour] == [merged["id"]]
    assert isinstance(behaviour[0].data, BehaviorOccurred)
    assert behaviour[0].data.kind == "identify" and behaviour[0].data.profile_id == merged["id"]
    first_page = await profile_service.events_on(topics.BEHAVIOR, message_id=pages[0].message_id)
    assert [(event.key, event.data.event) for event in first_page] == [(anonymous["id"], "Home")]


async def test_traits_keep_the_latest_write_by_event_time(profile_service: ProfileService) -> None:
    user_id = unique("user")
    newer = identify(user_id, 20, plan="premium", tags="vip,tea_lover")
    older = identify(user_id, 10, plan="basic", city="Hangzhou")
    await profile_service.publish(newer, older)
    profile = await profile_service.wait_for_profile(f"user_id:{user_id}", counted=2)

    assert profile["traits"] == {"plan": "premium", "tags": "vip,tea_lover", "city": "Hangzhou"}
    assert profile["tags"] == ["tea_lover", "vip"]
    # The calls' changes travel with their behaviours, in one batch or two.
    await profile_service.wait_for_events(topics.BEHAVIOR, message_id=older.message_id)
    behaviours = await profile_service.events_on(topics.BEHAVIOR, profile_id=profile["id"])
    changed = {
        change.field: change.after for event in behaviours for change in event.data.profile_changes
    }
    assert changed["traits.plan"] == "premium"
    assert changed["traits.city"] == "Hangzhou"
    assert changed["tags"] == ["tea_lover", "vip"]


async def test_a_call_that_changes_traits_says_so_in_its_behaviour_and_nowhere_else(
    profile_service: ProfileService,
) -> None:
    user_id = unique("user")
    call = identify(user_id, 0, plan="premium", tags="vip")
    await profile_service.publish(call)

    behaviours = await profile_service.wait_for_events(topics.BEHAVIOR, message_id=call.message_id)
    [behaviour] = [event.data for event in behaviours]
    assert isinstance(behaviour, BehaviorOccurred)
    changed = {change.field: (change.before, change.after) for change in behaviour.profile_changes}
    assert changed["traits.plan"] == (None, "premium")
    assert changed["tags"] == (None, ["vip"])
    assert "lifecycle_stage" in changed  # a new profile: every field it has is a change
    updates = await profile_service.updates_up_to_a_change_request(behaviour.profile_id)
    assert len(updates) == 1, "only the change request's: the call's changes were not repeated"
    assert "traits.plan" not in {change.field for change in updates[0].data.changes}


async def test_orders_give_rfm_scores_and_events_page_newest_first(
    profile_service: ProfileService,
) -> None:
    user_id = unique("user")
    orders = [track(user_id, "order_completed", minute, revenue=400.0) for minute in range(3)]
    await profile_service.publish(*orders)
    profile = await profile_service.wait_for_profile(f"user_id:{user_id}", counted=3)
    assert profile["orders"] == 3 and profile["revenue"] == 1200.0
    assert profile["scores"]["frequency"] == 3 and profile["scores"]["monetary"] == 4

    first = (await profile_service.client.get(f"/profiles/{profile['id']}/events?limit=2")).json()
    assert [e["message_id"] for e in first["events"]] == [
        orders[2].message_id,
        orders[1].message_id,
    ]
    rest = await profile_service.client.get(
        f"/profiles/{profile['id']}/events", params={"limit": 2, "before": first["next_before"]}
    )
    assert [e["message_id"] for e in rest.json()["events"]] == [orders[0].message_id]
    assert rest.json()["next_before"] is None


async def test_erasure_removes_the_person_and_emits_profile_deleted(
    profile_service: ProfileService,
) -> None:
    user_id, anonymous_id = unique("user"), unique("anon")
    await profile_service.publish(
        identify(user_id, 0, anonymous_id, email=f"{user_id}@example.com")
    )
    profile = await profile_service.wait_for_profile(f"user_id:{user_id}")

    response = await profile_service.client.delete(f"/profiles/{profile['id']}")

    assert response.status_code == 202
    assert response.json()["profile_id"] == profile["id"]
    assert (await profile_service.client.get(f"/profiles/{profile['id']}")).status_code == 404
    assert await profile_service.profile_of(f"anonymous_id:{anonymous_id}") is None
    assert await profile_service.profile_of(f"email:{user_id}@example.com") is None
    history = await profile_service.fetchval(
        "SELECT count(*) FROM {schema}.profile_events WHERE profile_id = $1", profile["id"]
    )
    assert history == 0

    async def deleted() -> bool:
        found = await profile_service.events_on(topics.PROFILE, profile_id=profile["id"])
        return any(isinstance(event.data, ProfileDeleted) for event in found)

    await wait_for(deleted, within=30, what="profile.deleted")
    again = await profile_service.client.delete(f"/profiles/{profile['id']}")
    assert again.status_code == 404


@pytest.mark.parametrize(
    ("path", "status", "code"),
    [
        ("/profiles/prf_DOESNOTEXIST", 404, "profile_not_found"),
        ("/profiles/not-a-profile-id", 422, "invalid_request"),
        ("/profiles?identifier=passport:123", 422, "invalid_identifier"),
        ("/profiles?identifier=email:nobody", 422, "invalid_identifier"),
        ("/profiles?identifier=nocolon", 422, "invalid_identifier"),
        ("/profiles?trait=plan", 422, "invalid_trait"),
        ("/profiles?trait=:pro", 422, "invalid_trait"),
        ("/profiles?limit=0", 422, "invalid_request"),
        ("/profiles?limit=201", 422, "invalid_request"),
        ("/profiles/prf_DOESNOTEXIST/events", 404, "profile_not_found"),
        ("/profiles/prf_X/events?limit=0", 422, "invalid_request"),
        ("/profiles/prf_X/events?before=abc", 422, "invalid_request"),
    ],
)
async def test_bad_requests_answer_4xx_in_the_error_format(
    profile_service: ProfileService, path: str, status: int, code: str
) -> None:
    response = await profile_service.client.get(path)
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


async def test_management_needs_the_admin_token(profile_service: ProfileService) -> None:
    response = await profile_service.client.get(
        "/profiles?identifier=user_id:u1", headers={"Authorization": "Bearer wrong"}
    )
    assert response.status_code == 401
    deletion = await profile_service.client.delete("/profiles/prf_X", headers={"Authorization": ""})
    assert deletion.status_code == 401


async def _cohort_of(
    profile_service: ProfileService, cohort: str, *people: dict[str, Any]
) -> list[str]:
    """Identifies each person with `cohort` and their traits; their profile ids once all show."""
    calls = [identify(unique("user"), 1, cohort=cohort, **traits) for traits in people]
    await profile_service.publish(*calls)
    ids: list[str] = []

    async def all_there() -> bool:
        answer = await profile_service.client.get("/profiles", params={"trait": f"cohort:{cohort}"})
        assert answer.status_code == 200, answer.text
        ids[:] = [profile["id"] for profile in answer.json()["profiles"]]
        return len(ids) == len(people)

    await wait_for(all_there, within=30, what=f"the {len(people)} profiles of {cohort}")
    return ids


async def test_profiles_are_browsed_in_pages_by_trait(profile_service: ProfileService) -> None:
    cohort = unique("cohort")
    people: list[dict[str, Any]] = [
        {"plan": "pro"},
        {"plan": "free"},
        {"plan": "pro", "age": 42},
        {},
        {"age": "42"},
    ]
    ids = await _cohort_of(profile_service, cohort, *people)
    assert ids == sorted(ids)

    pages: list[list[str]] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"trait": f"cohort:{cohort}", "limit": 2}
        if after is not None:
            params["after"] = after
        answer = (await profile_service.client.get("/profiles", params=params)).json()
        pages.append([profile["id"] for profile in answer["profiles"]])
        after = answer["next_after"]
        if after is None:
            break
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]

    async def matching(*traits: str) -> list[dict[str, Any]]:
        params = {"trait": [f"cohort:{cohort}", *traits]}
        answer = await profile_service.client.get("/profiles", params=params)
        assert answer.status_code == 200, answer.text
        found: list[dict[str, Any]] = answer.json()["profiles"]
        return found

    pro = await matching("plan:pro")
    assert [profile["traits"]["plan"] for profile in pro] == ["pro", "pro"]
    assert len(await matching("plan:pro", "age:42")) == 1
    assert {profile["traits"]["age"] for profile in await matching("age:42")} == {42, "42"}
    assert await matching("plan:enterprise") == []


async def test_an_identifier_narrows_the_search_to_its_profile(
    profile_service: ProfileService,
) -> None:
    cohort = unique("cohort")
    [profile_id] = await _cohort_of(profile_service, cohort, {"plan": "pro"})
    [identifier] = [
        found
        for found in (await profile_service.client.get(f"/profiles/{profile_id}")).json()[
            "identifiers"
        ]
        if found.startswith("user_id:")
    ]

    async def ids(**params: Any) -> list[str]:
        answer = (await profile_service.client.get("/profiles", params=params)).json()
        return [profile["id"] for profile in answer["profiles"]]

    assert await ids(identifier=identifier) == [profile_id]
    assert await ids(identifier=identifier, trait="plan:pro") == [profile_id]
    assert await ids(identifier=identifier, trait="plan:free") == []


async def test_profiles_without_a_filter_are_every_profile_in_id_order(
    profile_service: ProfileService,
) -> None:
    await _cohort_of(profile_service, unique("cohort"), {}, {})
    answer = await profile_service.client.get("/profiles", params={"limit": 200})
    assert answer.status_code == 200
    ids = [profile["id"] for profile in answer.json()["profiles"]]
    assert len(ids) >= 2 and ids == sorted(ids)


async def test_an_unknown_identifier_finds_no_profile(profile_service: ProfileService) -> None:
    assert await profile_service.profile_of(f"user_id:{unique('nobody')}") is None
