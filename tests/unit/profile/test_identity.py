"""Identity resolution: which profile a call lands on, merges and their survivor, idempotency."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

import pytest

from libs.common.events import IngestAlias, IngestIdentify, IngestPage, IngestTrack
from services.profile.identity import (
    CallIdentity,
    Identifier,
    IdentityGraph,
    call_identity,
    new_profile_id,
    parse_identifier,
)

EXTERNAL = ("wechat_openid", "wechat_unionid", "crm_id")
_TIMES: dict[str, Any] = {
    "timestamp": datetime(2025, 3, 14, tzinfo=UTC),
    "receivedAt": datetime(2025, 3, 14, tzinfo=UTC),
    "sourceId": "src_web",
}
_ids = itertools.count()


def _message() -> str:
    return f"m{next(_ids)}"


def page(anonymous_id: str) -> CallIdentity:
    return call_identity(
        IngestPage(messageId=_message(), anonymousId=anonymous_id, **_TIMES), EXTERNAL
    )


def identify(user_id: str | None, anonymous_id: str | None = None, **traits: Any) -> CallIdentity:
    call = IngestIdentify(
        messageId=_message(), userId=user_id, anonymousId=anonymous_id, traits=traits, **_TIMES
    )
    return call_identity(call, EXTERNAL)


def alias(user_id: str, previous_id: str) -> CallIdentity:
    call = IngestAlias(messageId=_message(), userId=user_id, previousId=previous_id, **_TIMES)
    return call_identity(call, EXTERNAL)


def sequential_graph() -> IdentityGraph:
    counter = itertools.count(1)
    return IdentityGraph(links={}, created_at={}, new_id=lambda at: f"prf_{next(counter):03d}")


def test_an_unknown_call_creates_a_profile_and_the_next_call_finds_it() -> None:
    graph = sequential_graph()
    first = graph.resolve(page("a1"), at=1.0)
    second = graph.resolve(page("a1"), at=2.0)
    assert first.created and first.profile_id == "prf_001"
    assert second.profile_id == "prf_001" and not second.created


def test_identify_after_anonymous_pages_merges_into_the_oldest_profile() -> None:
    graph = sequential_graph()
    anonymous = graph.resolve(page("a1"), at=1.0).profile_id
    known = graph.resolve(identify("u1"), at=5.0).profile_id
    merged = graph.resolve(identify("u1", "a1"), at=6.0)
    assert merged.profile_id == anonymous
    assert merged.merged_ids == (known,)
    assert graph.resolve(identify("u1"), at=7.0).profile_id == anonymous
    assert graph.merges() == {known: anonymous}


def test_survivor_ties_on_creation_time_go_to_the_smaller_id() -> None:
    graph = IdentityGraph(
        links={Identifier("user_id", "u1"): "prf_B", Identifier("anonymous_id", "a1"): "prf_A"},
        created_at={"prf_A": 10.0, "prf_B": 10.0},
    )
    assert graph.resolve(identify("u1", "a1"), at=20.0).profile_id == "prf_A"


def test_survivor_is_the_oldest_whatever_the_order_of_identifiers() -> None:
    links = {Identifier("user_id", "u1"): "prf_Z", Identifier("anonymous_id", "a1"): "prf_A"}
    graph = IdentityGraph(links=links, created_at={"prf_A": 20.0, "prf_Z": 10.0})
    assert graph.resolve(identify("u1", "a1"), at=30.0).profile_id == "prf_Z"


def test_track_with_two_known_profiles_does_not_merge_and_prefers_the_user_id() -> None:
    links = {Identifier("user_id", "u1"): "prf_B", Identifier("anonymous_id", "a1"): "prf_A"}
    graph = IdentityGraph(links=links, created_at={"prf_A": 1.0, "prf_B": 2.0})
    call = IngestTrack(messageId="t1", userId="u1", anonymousId="a1", event="x", **_TIMES)
    resolution = graph.resolve(call_identity(call, EXTERNAL), at=3.0)
    assert resolution.profile_id == "prf_B" and resolution.merged_ids == ()


def test_resolving_the_same_identify_twice_merges_once() -> None:
    graph = sequential_graph()
    graph.resolve(page("a1"), at=1.0)
    graph.resolve(identify("u1"), at=2.0)
    first = graph.resolve(identify("u1", "a1"), at=3.0)
    again = graph.resolve(identify("u1", "a1"), at=3.0)
    assert first.merged_ids == ("prf_002",)
    assert again.merged_ids == () and again.profile_id == first.profile_id


def test_merges_chain_to_the_final_survivor() -> None:
    graph = sequential_graph()
    graph.resolve(page("a1"), at=1.0)
    graph.resolve(page("a2"), at=2.0)
    graph.resolve(identify("u1"), at=3.0)
    graph.resolve(identify("u1", "a2"), at=4.0)
    graph.resolve(identify("u1", "a1"), at=5.0)
    assert graph.merges() == {"prf_002": "prf_001", "prf_003": "prf_001"}
    assert set(graph.new_links().values()) == {"prf_001"}


def test_email_and_external_ids_link_and_merge_on_identify() -> None:
    graph = sequential_graph()
    wechat = graph.resolve(identify(None, "a1", wechat_openid="oF3k"), at=1.0).profile_id
    crm = graph.resolve(identify("u1", email="Li.Wei@Example.com"), at=2.0).profile_id
    merged = graph.resolve(
        identify(None, "a9", wechat_openid="oF3k", email="li.wei@example.com"), 3
    )
    assert merged.profile_id == wechat and merged.merged_ids == (crm,)


def test_alias_joins_the_previous_user_id_to_the_new_one() -> None:
    graph = sequential_graph()
    old = graph.resolve(identify("wx_1"), at=1.0).profile_id
    new = graph.resolve(identify("u1"), at=2.0).profile_id
    result = graph.resolve(alias("u1", "wx_1"), at=3.0)
    assert result.profile_id == old and result.merged_ids == (new,)


def test_alias_finds_a_previous_anonymous_id() -> None:
    graph = sequential_graph()
    anonymous = graph.resolve(page("a1"), at=1.0).profile_id
    assert graph.resolve(alias("u1", "a1"), at=2.0).profile_id == anonymous
    assert graph.resolve(identify("u1"), at=3.0).profile_id == anonymous


def test_identifiers_come_from_traits_context_and_external_ids() -> None:
    call = IngestTrack(
        messageId="t1",
        anonymousId="a1",
        event="x",
        context={
            "traits": {"email": " A@B.C "},
            "wechat_unionid": "un1",
            "externalIds": [{"id": "c-9", "type": "crm_id"}, {"id": "z", "type": "other"}],
        },
        **_TIMES,
    )
    identity = call_identity(call, EXTERNAL)
    assert [str(i) for i in identity.lookup] == [
        "wechat_unionid:un1",
        "crm_id:c-9",
        "email:a@b.c",
        "anonymous_id:a1",
    ]
    assert not identity.may_merge


@pytest.mark.parametrize(
    ("text", "expected"),
    [("email:A@b.C", "email:a@b.c"), ("phone:+86 138-0000", "phone:+861380000")],
)
def test_parse_identifier_normalises(text: str, expected: str) -> None:
    assert str(parse_identifier(text, EXTERNAL)) == expected


@pytest.mark.parametrize("text", ["nocolon", "passport:1", "email:not-an-email", "user_id:"])
def test_parse_identifier_rejects_bad_input(text: str) -> None:
    with pytest.raises(ValueError):
        parse_identifier(text, EXTERNAL)


def test_profile_ids_are_prefixed_and_sort_by_time() -> None:
    early, late = new_profile_id(1_000.0), new_profile_id(2_000.0)
    assert early.startswith("prf_") and len(early) == 30
    assert early < late
