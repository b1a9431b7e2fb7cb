"""The journey service as a process over the real broker and database."""

from __future__ import annotations

from collections import defaultdict
from datetime import timedelta
from typing import Any

import pytest

from libs.common.events import ProfileSnapshot
from tests.events import (
    answering,
    behaviour,
    clicked,
    entered,
    erasure,
    exited,
    identified,
    identified_chunk,
    merge,
)
from tests.integration.journey.conftest import create_segment
from tests.integration.journey.harness import JourneyHarness, requests_of, send, unique
from tests.integration.support import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]


async def test_a_profile_entering_the_segment_is_sent_the_message(
    journey_service: JourneyHarness,
) -> None:
    journey, segment, profile = unique("jrn_enter"), unique("seg_enter"), unique("prf_enter")
    await create_segment(journey_service, segment)
    await journey_service.create_and_publish(
        journey,
        {
            "entry": {"segment": segment},
            "start": "send_welcome",
            "nodes": {
                "send_welcome": {
                    "type": "send",
                    "channel": "email",
                    "template_id": "tpl_welcome",
                    "variables": {"coupon": "TEA-15"},
                }
            },
        },
    )
    event = entered(profile, segment)
    await journey_service.publish(event)

    [request] = await requests_of(journey_service, journey, profile, 1)
    data = request.data
    assert data.idempotency_key == f"{journey}:v1:send_welcome:{profile}:1"
    assert (data.channel, data.template_id) == ("email", "tpl_welcome")
    assert data.triggered_by == event.id
    assert data.behavior_at == event.data.occurred_at
    assert data.variables == {
        "coupon": "TEA-15",
        "journey": {"id": journey, "version": 1, "node": "send_welcome"},
    }
    assert (data.journey.journey_id, data.journey.journey_version) == (journey, 1)


async def test_an_identify_enters_with_the_traits_it_set_and_its_request_carries_them(
    journey_service: JourneyHarness,
) -> None:
    """What the call changed travels with its behaviour (no profile.updated follows): the
    journey it starts already sees it, and the request carries the profile as it then is."""
    journey, event, profile = unique("jrn_identify"), unique("signed_up"), unique("prf_identify")
    await journey_service.create_and_publish(
        journey,
        {
            "entry": {"event": event},
            "start": "premium_or_not",
            "nodes": {
                "premium_or_not": {
                    "type": "branch",
                    "branches": [
                        {
                            "condition": {"trait": "plan", "op": "eq", "value": "premium"},
                            "next": "premium",
                        }
                    ],
                    "default": "basic",
                },
                "premium": send("premium", "tpl_premium"),
                "basic": send("basic", "tpl_basic"),
            },
        },
    )
    traits = {"plan": "premium", "email": "li@example.com", "first_name": "Li"}
    await journey_service.publish(identified(profile, event, traits=traits))

    [request] = await requests_of(journey_service, journey, profile, 1)
    assert request.data.template_id == "tpl_premium"
    assert request.data.profile is not None
    assert request.data.profile.traits == traits
    assert await journey_service.traits_of(profile) == traits


async def test_each_profile_of_an_import_chunk_is_copied_with_its_traits(
    journey_service: JourneyHarness,
) -> None:
    people = {
        unique("prf_imported"): {"plan": unique("plan"), "email": f"{n}@example.com"}
        for n in range(3)
    }
    await journey_service.publish(
        identified_chunk(*(identified(p, traits=traits) for p, traits in people.items()))
    )

    async def copied() -> bool:
        return all([await journey_service.traits_of(p) == t for p, t in people.items()])

    await wait_for(copied, within=30, what="journey's copies of the imported profiles")


async def test_a_segment_on_a_trait_an_identify_set_starts_the_journey(
    journey_service: JourneyHarness,
) -> None:
    segment, journey, profile = unique("seg_plan"), unique("jrn_plan"), unique("prf_plan")
    plan = unique("premium")
    created = await journey_service.http.post(
        f"{journey_service.segment_url}/segments",
        json={
            "id": segment,
            "name": segment,
            "conditions": {"trait": "plan", "op": "eq", "value": plan},
        },
    )
    assert created.status_code == 201, created.text
    await journey_service.create_and_publish(
        journey,
        {"entry": {"segment": segment}, "start": "hello", "nodes": {"hello": send("hello", "tpl")}},
    )
    await journey_service.publish(
        identified(profile, unique("identify"), traits={"plan": plan, "email": "a@b.c"})
    )

    # Segment takes the profile in on the trait; journey, entered on the segment, asks for the
    # message with the trait it copied from the same behaviour.
    [request] = await requests_of(journey_service, journey, profile, 1, within=90)
    assert request.data.profile is not None
    assert request.data.profile.traits == {"plan": plan, "email": "a@b.c"}


async def test_an_entry_that_overtakes_its_behaviour_decides_and_renders_with_its_facts(
    journey_service: JourneyHarness,
) -> None:
    """The behaviour behind a segment entry travels on another topic and may reach journey
    later (or in a later batch): the entry's own facts decide its first steps and travel with
    its request, and journey's copy is left to the behaviour."""
    journey, segment, profile = unique("jrn_overtake"), unique("seg_overtake"), unique("prf_ot")
    await create_segment(journey_service, segment)
    await journey_service.create_and_publish(
        journey,
        {
            "entry": {"segment": segment},
            "start": "premium_or_not",
            "nodes": {
                "premium_or_not": {
                    "type": "branch",
                    "branches": [
                        {
                            "condition": {"trait": "plan", "op": "eq", "value": "premium"},
                            "next": "premium",
                        }
                    ],
                    "default": "basic",
                },
                "premium": send("premium", "tpl_premium"),
                "basic": send("basic", "tpl_basic"),
            },
        },
    )
    traits = {"plan": "premium", "email": "ot@example.com"}
    facts = ProfileSnapshot(traits=traits, tags=["vip"], lifecycle_stage="new")
    await journey_service.publish(entered(profile, segment, profile=facts))

    [request] = await requests_of(journey_service, journey, profile, 1)
    assert request.data.template_id == "tpl_premium"
    assert request.data.profile is not None
    assert request.data.profile.traits == traits
    assert request.data.profile.tags == ["vip"]
    assert await journey_service.traits_of(profile) == {}


async def test_reentry_never_does_not_enter_twice(journey_service: JourneyHarness) -> None:
    segment, profile = unique("seg_re"), unique("prf_re")
    once, always = unique("jrn_once"), unique("jrn_always")
    await create_segment(journey_service, segment)
    for journey, rule in ((once, "never"), (always, "always")):
        await journey_service.create_and_publish(
            journey,
            {
                "entry": {"segment": segment},
                "reentry": {"rule": rule},
                "start": "hello",
                "nodes": {"hello": send("hello", "tpl_hello")},
            },
        )
    await journey_service.publish(entered(profile, segment))
    await requests_of(journey_service, always, profile, 1)
    await journey_service.publish(entered(profile, segment))

    # Both journeys see each event in one transaction: once `always` has run twice, `never`
    # has seen the second entry too.
    runs = await requests_of(journey_service, always, profile, 2)
    assert [r.data.idempotency_key.rsplit(":", 1)[1] for r in runs] == ["1", "2"]
    [only] = await requests_of(journey_service, once, profile, 1)
    assert only.data.idempotency_key.endswith(":1")


async def test_a_wait_fires_from_the_durable_timer(journey_service: JourneyHarness) -> None:
    journey, segment, profile = unique("jrn_wait"), unique("seg_wait"), unique("prf_wait")
    await create_segment(journey_service, segment)
    await journey_service.create_and_publish(
        journey,
        {
            "entry": {"segment": segment},
            "start": "first",
            "nodes": {
                "first": send("first", "tpl_first", "pause"),
                "pause": {"type": "wait", "duration": "PT2S", "next": "second"},
                "second": send("second", "tpl_second"),
            },
        },
    )
    await journey_service.publish(entered(profile, segment))

    first, second = await requests_of(journey_service, journey, profile, 2)
    assert [first.data.journey.node_id, second.data.journey.node_id] == ["first", "second"]
    assert second.time - first.time >= timedelta(seconds=1.9)
    stats = await journey_service.stats(journey)
    assert stats["nodes"]["pause"] == {**stats["nodes"]["pause"], "entered": 1, "completed": 1}
    assert stats["total"]["completed"] == 1


def click_journey(segment: str) -> dict[str, Any]:
    return {
        "entry": {"segment": segment},
        "goal": {"event": "order_completed", "within": "P1D"},
        "start": "offer",
        "nodes": {
            "offer": send("offer", "tpl_offer", "wait_click"),
            "wait_click": {
                "type": "wait_for",
                "outcome": "clicked",
                "node": "offer",
                "timeout": "PT3S",
                "next": "thanks",
                "timeout_next": "nudge",
            },
            "thanks": send("thanks", "tpl_thanks"),
            "nudge": send("nudge", "tpl_nudge"),
        },
    }


async def test_wait_for_a_click_takes_the_matched_or_the_timeout_path(
    journey_service: JourneyHarness,
) -> None:
    journey, segment = unique("jrn_click"), unique("seg_click")
    clicker, ignorer = unique("prf_clicker"), unique("prf_ignorer")
    await create_segment(journey_service, segment)
    await journey_service.create_and_publish(journey, click_journey(segment))
    await journey_service.publish(entered(clicker, segment), entered(ignorer, segment))
    [offer] = await requests_of(journey_service, journey, clicker, 1)
    await journey_service.publish(clicked(**answering(offer.data)))

    _, thanks = await requests_of(journey_service, journey, clicker, 2)
    _, nudge = await requests_of(journey_service, journey, ignorer, 2)
    assert thanks.data.journey.node_id == "thanks"
    assert nudge.data.journey.node_id == "nudge"

    stats = await journey_service.stats(journey)
    wait_click = stats["nodes"]["wait_click"]
    assert (wait_click["entered"], wait_click["matched"], wait_click["timed_out"]) == (2, 1, 1)
    assert wait_click["waiting"] == 0
    assert stats["total"] == {
        "entered": 2,
        "in_progress": 0,
        "completed": 2,
        "exited": 0,
        "goal_reached": 0,
    }
    [version] = stats["versions"]
    assert version["version"] == 1 and version["entered"] == 2


async def test_an_invalid_graph_is_refused_naming_the_node(
    journey_service: JourneyHarness,
) -> None:
    segment = unique("seg_valid")
    await create_segment(journey_service, segment)
    graph = click_journey(segment)
    graph["nodes"]["thanks"]["next"] = "nowhere"
    response = await journey_service.create(unique("jrn_bad"), graph)
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "nodes.thanks.next"
    assert response.json()["error"]["code"] == "invalid_journey"


async def test_an_unknown_lifecycle_stage_is_refused_naming_the_condition(
    journey_service: JourneyHarness,
) -> None:
    segment = unique("seg_stage")
    await create_segment(journey_service, segment)
    graph = click_journey(segment)
    graph["exit"] = {"condition": {"lifecycle_stage": "customer"}}
    response = await journey_service.create(unique("jrn_stage"), graph)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "exit.condition.lifecycle_stage"


async def test_an_unknown_segment_is_refused(journey_service: JourneyHarness) -> None:
    response = await journey_service.create(
        unique("jrn_noseg"), click_journey(unique("seg_missing"))
    )
    assert response.status_code == 422, response.text
    assert response.json()["error"]["field"] == "entry.segment"


async def test_validate_checks_a_graph_as_create_would_and_stores_nothing(
    journey_service: JourneyHarness,
) -> None:
    segment = unique("seg_check")
    await create_segment(journey_service, segment)
    graph = click_journey(segment)
    checked = await journey_service.http.post("/journeys/validate", json=graph)
    assert checked.status_code == 200, checked.text
    assert checked.json() == {"valid": True, "nodes": len(graph["nodes"])}

    del graph["nodes"]["thanks"]["template_id"]
    refused = await journey_service.http.post("/journeys/validate", json=graph)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "invalid_journey"
    assert refused.json()["error"]["field"] == "nodes.thanks.template_id"
    unknown = await journey_service.http.post(
        "/journeys/validate", json={**click_journey(segment), "name": "not a graph field"}
    )
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["error"]["field"] == "body.name"
    listed = (await journey_service.http.get("/journeys")).json()["journeys"]
    assert "validate" not in [journey["id"] for journey in listed]


async def test_a_split_records_its_arm_in_stats(journey_service: JourneyHarness) -> None:
    journey, segment = unique("jrn_split"), unique("seg_split")
    await create_segment(journey_service, segment)
    await journey_service.create_and_publish(
        journey,
        {
            "entry": {"segment": segment},
            "start": "ab",
            "nodes": {
                "ab": {
                    "type": "split",
                    "arms": [
                        {"name": "a", "weight": 1, "next": "send_a"},
                        {"name": "b", "weight": 1, "next": "send_b"},
                    ],
                },
                "send_a": send("send_a", "tpl_a"),
                "send_b": send("send_b", "tpl_b"),
            },
        },
    )
    profiles = [unique("prf_split") for _ in range(6)]
    await journey_service.publish(*(entered(p, segment) for p in profiles))

    async def all_sent() -> bool:
        return len(await journey_service.requested(journey)) == len(profiles)

    await wait_for(all_sent, within=30, what="a request per profile")
    by_node: dict[str, int] = defaultdict(int)
    for request in await journey_service.requested(journey):
        by_node[request.data.journey.node_id] += 1
    arms = (await journey_service.stats(journey))["nodes"]["ab"]["arms"]
    assert arms == {
        arm: count
        for arm, count in {"a": by_node["send_a"], "b": by_node["send_b"]}.items()
        if count
    }


def waiting_journey(segment: str, *, on_segment_exit: bool = False) -> dict[str, Any]:
    return {
        "entry": {"segment": segment},
        "exit": {"on_segment_exit": on_segment_exit},
        "start": "first",
        "nodes": {
            "first": send("first", "tpl_first", "pause"),
            "pause": {"type": "wait", "duration": "PT2S", "next": "second"},
            "second": send("second", "tpl_second"),
        },
    }


async def wait_for_stats(
    service: JourneyHarness, journey: str, check: Any, what: str, within: float = 30
) -> dict[str, Any]:
    stats: dict[str, Any] = {}

    async def holds() -> bool:
        nonlocal stats
        stats = await service.stats(journey)
        return bool(check(stats))

    await wait_for(holds, within=within, what=what)
    return stats


async def test_a_paused_journey_holds_its_sends_and_takes_no_one_until_resumed(
    journey_service: JourneyHarness,
) -> None:
    segment, paused, witness = unique("seg_pause"), unique("jrn_paused"), unique("jrn_witness")
    inside, latecomer = unique("prf_inside"), unique("prf_late")
    await create_segment(journey_service, segment)
    await journey_service.create_and_publish(paused, waiting_journey(segment))
    await journey_service.create_and_publish(
        witness,
        {"entry": {"segment": segment}, "start": "w", "nodes": {"w": send("w", "tpl_w")}},
    )
    await journey_service.publish(entered(inside, segment))
    await requests_of(journey_service, paused, inside, 1)
    response = await journey_service.http.post(f"/journeys/{paused}/pause")
    assert response.json()["status"] == "paused"

    await wait_for_stats(
        journey_service,
        paused,
        lambda s: s["nodes"].get("second", {}).get("waiting") == 1,
        "the run to hold at the second send",
    )
    await journey_service.publish(entered(latecomer, segment))
    await requests_of(journey_service, witness, latecomer, 1)  # the entry was handled

    response = await journey_service.http.post(f"/journeys/{paused}/resume")
    assert response.json()["status"] == "active"
    _, second = await requests_of(journey_service, paused, inside, 2)
    assert second.data.idempotency_key == f"{paused}:v1:second:{inside}:1"
    assert not [
        r for r in await journey_service.requested(paused) if r.data.profile_id == latecomer
    ]


async def test_a_new_version_is_entered_while_running_profiles_finish_theirs(
    journey_service: JourneyHarness,
) -> None:
    segment, journey = unique("seg_ver"), unique("jrn_ver")
    early, late = unique("prf_early"), unique("prf_late")
    await create_segment(journey_service, segment)
    await journey_service.create_and_publish(journey, waiting_journey(segment))
    await journey_service.publish(entered(early, segment))
    await requests_of(journey_service, journey, early, 1)
    graph = waiting_journey(segment)
    graph["nodes"]["second"]["template_id"] = "tpl_second_v2"
    response = await journey_service.http.put(
        f"/journeys/{journey}", json={"name": journey, **graph}
    )
    assert response.status_code == 200, response.text
    published = await journey_service.http.post(f"/journeys/{journey}/publish")
    assert published.json()["published_version"] == 2
    assert [v["version"] for v in published.json()["versions"]] == [1, 2]
    await journey_service.publish(entered(late, segment))

    _, early_second = await requests_of(journey_service, journey, early, 2)
    _, late_second = await requests_of(journey_service, journey, late, 2)
    assert early_second.data.idempotency_key == f"{journey}:v1:second:{early}:1"
    assert early_second.data.template_id == "tpl_second"
    assert late_second.data.idempotency_key == f"{journey}:v2:second:{late}:1"
    assert late_second.data.template_id == "tpl_second_v2"


async def test_update_profile_asks_profile_and_the_goal_ends_the_run(
    journey_service: JourneyHarness,
) -> None:
    journey, event, profile = unique("jrn_goal"), unique("viewed"), unique("prf_goal")
    await journey_service.create_and_publish(
        journey,
        {
            "entry": {"event": event},
            "goal": {"event": "order_completed", "within": "P1D", "exit": True},
            "start": "tag",
            "nodes": {
                "tag": {
                    "type": "update_profile",
                    "set_traits": {"last_journey": journey},
                    "add_tags": ["nurtured"],
                    "next": "pause",
                },
                "pause": {"type": "wait", "duration": "P1D", "next": "never_sent"},
                "never_sent": send("never_sent", "tpl_never"),
            },
        },
    )
    await journey_service.publish(behaviour(profile, event, properties={"sku": "oolong"}))

    changes: list[Any] = []

    async def asked() -> bool:
        nonlocal changes
        changes = await journey_service.change_requests(journey)
        return bool(changes)

    await wait_for(asked, within=30, what="profile.change_requested on ingest.v1")
    [change] = changes
    assert change.profile_id == profile
    assert (change.set_traits, change.add_tags) == ({"last_journey": journey}, ["nurtured"])
    assert change.journey is not None and change.journey.node_id == "tag"

    await journey_service.publish(behaviour(profile, "order_completed", properties={"total": 30}))
    stats = await wait_for_stats(
        journey_service, journey, lambda s: s["total"]["goal_reached"] == 1, "the goal"
    )
    assert stats["total"]["exited"] == 1 and stats["total"]["in_progress"] == 0
    assert stats["nodes"]["pause"]["goal_reached"] == 1


async def test_leaving_the_entry_segment_exits_and_erasure_forgets_the_run(
    journey_service: JourneyHarness,
) -> None:
    segment, journey = unique("seg_leave"), unique("jrn_leave")
    leaver, erased = unique("prf_leaver"), unique("prf_erased")
    await create_segment(journey_service, segment)
    graph = waiting_journey(segment, on_segment_exit=True)
    graph["nodes"]["pause"]["duration"] = "P1D"
    await journey_service.create_and_publish(journey, graph)
    await journey_service.publish(entered(leaver, segment), entered(erased, segment))
    await wait_for_stats(
        journey_service, journey, lambda s: s["total"]["in_progress"] == 2, "both waiting"
    )
    await journey_service.publish(exited(leaver, segment), erasure(erased))

    stats = await wait_for_stats(
        journey_service, journey, lambda s: s["total"]["in_progress"] == 0, "no one left"
    )
    assert stats["total"]["exited"] == 1
    assert stats["nodes"]["pause"]["exited"] == 1


async def test_a_merged_profiles_run_continues_as_the_survivors(
    journey_service: JourneyHarness,
) -> None:
    segment, journey = unique("seg_merge"), unique("jrn_merge")
    anonymous, known = unique("prf_anon"), unique("prf_known")
    await create_segment(journey_service, segment)
    graph = waiting_journey(segment)
    graph["nodes"]["pause"]["duration"] = "PT4S"
    await journey_service.create_and_publish(journey, graph)
    await journey_service.publish(entered(anonymous, segment))
    await requests_of(journey_service, journey, anonymous, 1)
    await journey_service.publish(merge(known, anonymous))

    [second] = await requests_of(journey_service, journey, known, 1)
    assert second.data.idempotency_key == f"{journey}:v1:second:{known}:1"


async def test_a_persons_runs_are_read_with_their_journeys_names_latest_first(
    journey_service: JourneyHarness,
) -> None:
    event, profile = unique("ordered"), unique("prf_runs")
    first, second = unique("jrn_runs_a"), unique("jrn_runs_b")
    for journey in (first, second):
        await journey_service.create_and_publish(
            journey,
            {"entry": {"event": event}, "start": "hello", "nodes": {"hello": send("hello", "tpl")}},
        )
    await journey_service.publish(behaviour(profile, event))
    await requests_of(journey_service, first, profile, 1)
    await requests_of(journey_service, second, profile, 1)

    response = await journey_service.http.get(f"/profiles/{profile}/runs")
    assert response.status_code == 200, response.text
    runs = response.json()["runs"]
    assert sorted((r["journey_id"], r["journey_name"], r["run"], r["version"]) for r in runs) == [
        (first, first, 1, 1),
        (second, second, 1, 1),
    ]
    assert {(r["node_id"], r["status"]) for r in runs} == {(None, "completed")}
    elsewhere = await journey_service.http.get(f"/profiles/{unique('prf_nobody')}/runs")
    assert elsewhere.json()["runs"] == []
    refused = await journey_service.http.get(f"/profiles/{profile}/runs?limit=501")
    assert refused.status_code == 422
    assert refused.json()["error"]["field"] == "query.limit"
