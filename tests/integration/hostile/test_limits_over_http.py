"""Whatever ingest accepts, every consumer downstream can decode and store (libs/common/limits.py):
a value beyond the limits is a 4xx naming the field, on every route; one within them reaches the
profile as it was sent."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.common.limits import MAX_DEPTH
from tests.integration.closed_loop.harness import now
from tests.integration.hostile.conftest import Hostile
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration

_WITHIN = 60


def _user() -> str:
    return f"limits_{uuid.uuid4().hex[:12]}"


def _nested(levels: int, leaf: Any = "leaf") -> Any:
    """`levels` objects and arrays one inside the other, objects outermost, `leaf` innermost."""
    value: Any = leaf
    for level in reversed(range(levels)):
        value = [value] if level % 2 else {"k": value}
    return value


def _deep_json(levels: int) -> str:
    """The JSON text of `_nested(levels)`, deeper than Python's own encoder goes."""
    opening = "".join("[" if level % 2 else '{"k":' for level in range(levels))
    closing = "".join("]" if level % 2 else "}" for level in reversed(range(levels)))
    return f'{opening}"leaf"{closing}'


def _levels(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_levels(item) for item in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_levels(item) for item in value), default=0)
    return 0


async def _post(hostile: Hostile, path: str, body: Any, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await hostile.loop.ingest.post(
        path,
        content=content,
        headers={"content-type": "application/json", **headers},
        auth=httpx.BasicAuth(hostile.loop.write_key, ""),
    )


def _refused_naming(response: httpx.Response, field: str) -> None:
    seen = f"{response.status_code} {response.text[:300]}"
    assert response.status_code == 400, seen
    error = response.json()["error"]
    assert error["field"] == field, seen
    assert error["message"], seen


async def _profile(hostile: Hostile, user_id: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    async def there() -> bool:
        profile = await hostile.loop.profile_of(f"user_id:{user_id}")
        found.update(profile or {})
        return profile is not None

    await wait_for(there, within=_WITHIN, what=f"the profile of {user_id}")
    return found


async def _events(hostile: Hostile, user_id: str, count: int) -> list[dict[str, Any]]:
    """The profile's events once it has `count` of them, oldest first."""
    profile_id = (await _profile(hostile, user_id))["id"]
    events: list[dict[str, Any]] = []

    async def all_there() -> bool:
        page = await hostile.loop.call(
            "profile", "GET", f"/profiles/{profile_id}/events", params={"limit": 500}
        )
        events[:] = reversed(page["events"])
        return len(events) >= count

    await wait_for(all_there, within=_WITHIN, what=f"{count} events of {user_id}")
    return events


async def _traits(hostile: Hostile, user_id: str, expected: dict[str, Any]) -> dict[str, Any]:
    traits: dict[str, Any] = {}

    async def arrived() -> bool:
        traits.update((await _profile(hostile, user_id))["traits"])
        return expected.keys() <= traits.keys()

    await wait_for(arrived, within=_WITHIN, what=f"the traits of {user_id}")
    return traits


NUL_CALLS: dict[str, tuple[str, dict[str, Any], str]] = {
    "user id": ("track", {"userId": "u\x00", "event": "e"}, "userId"),
    "event name": ("track", {"userId": "u", "event": "order\x00completed"}, "event"),
    "property key": (
        "track",
        {"userId": "u", "event": "e", "properties": {"a\x00": 1}},
        "properties.a\x00",
    ),
    "property value": (
        "track",
        {"userId": "u", "event": "e", "properties": {"a": {"b": [1, 2, 3, "x\x00"]}}},
        "properties.a.b[3]",
    ),
    "trait": ("identify", {"userId": "u", "traits": {"name": "Li\x00Wei"}}, "traits.name"),
}


@pytest.mark.parametrize("case", NUL_CALLS)
async def test_a_nul_anywhere_is_refused_naming_the_field(hostile: Hostile, case: str) -> None:
    kind, call, field = NUL_CALLS[case]
    _refused_naming(await _post(hostile, f"/v1/{kind}", call), field)


async def test_nesting_at_the_limit_reaches_the_profile_and_beyond_it_is_refused(
    hostile: Hostile,
) -> None:
    user_id = _user()
    deepest = _nested(MAX_DEPTH)
    assert _levels(deepest) == MAX_DEPTH
    track = {"userId": user_id, "event": "deep", "properties": deepest, "timestamp": now()}
    traits = {"deep": _nested(MAX_DEPTH - 1)}
    identify = {"userId": user_id, "traits": traits}
    assert (await _post(hostile, "/v1/track", track)).status_code == 200
    assert (await _post(hostile, "/v1/identify", identify)).status_code == 200
    [event] = [e for e in await _events(hostile, user_id, 2) if e["event"] == "deep"]
    assert event["properties"] == deepest
    assert (await _traits(hostile, user_id, traits))["deep"] == traits["deep"]

    too_deep = {**track, "properties": _nested(MAX_DEPTH + 1)}
    response = await _post(hostile, "/v1/track", too_deep)
    _refused_naming(response, "properties" + ".k[0]" * (MAX_DEPTH // 2))


@pytest.mark.parametrize("levels", [300, 1_000])
@pytest.mark.parametrize("kind", ["track", "identify"])
async def test_deep_nesting_is_a_4xx_not_a_500(hostile: Hostile, kind: str, levels: int) -> None:
    field = "properties" if kind == "track" else "traits"
    call = json.dumps({"userId": _user(), "event": "deep", field: "DEEP"})
    body = call.replace('"DEEP"', _deep_json(levels)).encode()
    response = await _post(hostile, f"/v1/{kind}", body)
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]["field"].startswith(field)


async def test_integers_beyond_64_bits_are_refused_and_within_them_kept_exactly(
    hostile: Hostile,
) -> None:
    user_id = _user()
    for number in (2**63, -(2**63) - 1, 2**64, 2**70):
        call = {"userId": user_id, "event": "big", "properties": {"n": number}}
        _refused_naming(await _post(hostile, "/v1/track", call), "properties.n")
    largest = {"n": 2**63 - 1, "m": -(2**63), "list": [2**63 - 1]}
    call = {"userId": user_id, "event": "big", "properties": largest, "timestamp": now()}
    assert (await _post(hostile, "/v1/track", call)).status_code == 200
    [event] = await _events(hostile, user_id, 1)
    assert event["properties"] == largest
    assert type(event["properties"]["n"]) is int


async def test_a_batch_refuses_its_bad_calls_alone(hostile: Hostile) -> None:
    first, second = _user(), _user()
    calls = [
        {"type": "identify", "userId": first, "traits": {"plan": "kept"}, "timestamp": now()},
        {"type": "track", "userId": "u", "event": "e", "properties": {"a": "\x00"}},
        {"type": "track", "userId": "u", "event": "e", "properties": _nested(300)},
        {"type": "identify", "userId": "u", "traits": {"n": 2**64}},
        {"type": "track", "userId": "u\x00", "event": "e"},
        {"type": "track", "userId": second, "event": "kept", "timestamp": now()},
    ]
    response = await _post(hostile, "/v1/batch", {"batch": calls})
    assert response.status_code == 200, response.text[:300]
    answer = response.json()
    assert answer["accepted"] == 2, answer
    fields = {row["index"]: row["field"] for row in answer["rejected"]}
    assert fields.keys() == {1, 2, 3, 4}, answer
    assert (fields[1], fields[3], fields[4]) == ("properties.a", "traits.n", "userId")
    assert fields[2].startswith("properties")
    assert (await _traits(hostile, first, {"plan": "kept"}))["plan"] == "kept"
    [event] = await _events(hostile, second, 1)
    assert event["event"] == "kept"


async def test_an_import_refuses_its_bad_rows_alone(hostile: Hostile) -> None:
    good = _user()
    rows = [
        {"type": "identify", "userId": good, "traits": {"plan": "imported"}, "timestamp": now()},
        {"type": "track", "userId": "u", "event": "e\x00"},
        {"type": "track", "userId": "u", "event": "e", "properties": _nested(300)},
        {"type": "identify", "userId": "u", "traits": {"n": 2**63}},
        {"type": "track", "userId": good, "event": "imported", "timestamp": now()},
    ]
    body = b"\n".join(json.dumps(row).encode() for row in rows)
    response = await _post(hostile, "/v1/import", body, **{"content-type": "application/x-ndjson"})
    assert response.status_code == 200, response.text[:300]
    job = response.json()
    assert (job["accepted"], job["rejected"]) == (2, 3), job
    fields = {error["row"]: error["field"] for error in job["errors"]}
    assert (fields[2], fields[4]) == ("event", "traits.n"), job
    assert fields[3].startswith("properties"), job
    assert (await _traits(hostile, good, {"plan": "imported"}))["plan"] == "imported"
    events = await _events(hostile, good, 2)
    assert [e["event"] for e in events if e["event"] == "imported"] == ["imported"]


# Hostile JSON: NULs in text and keys, integers about the 64-bit bounds, floats of every size,
# nesting about the limit.
_TEXT = st.text(alphabet=st.sampled_from("aZ\x00é中\U0001f600 \\\"'\n"), max_size=6)
_INTS = st.sampled_from([2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**30]) | st.integers()
_LEAVES = (
    st.none() | st.booleans() | _INTS | st.floats(allow_nan=False, allow_infinity=False) | _TEXT
)
_JSON = st.recursive(
    _LEAVES,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_TEXT, children, max_size=3),
    max_leaves=12,
)
_HOSTILE = st.builds(
    lambda value, levels: _nested(levels, value),
    _JSON,
    st.sampled_from([0, 1, MAX_DEPTH - 4, MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 250]),
)


def _hostile_values(count: int) -> list[tuple[str, Any]]:
    """Hostile properties or traits (the field's value is always an object)."""
    made: list[tuple[str, Any]] = []

    @settings(
        max_examples=count,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(st.sampled_from(["properties", "traits"]), _HOSTILE)
    def collect(field: str, value: Any) -> None:
        made.append((field, {"h": value}))

    collect()
    return made


async def test_hostile_json_is_refused_or_reaches_the_profile_intact(hostile: Hostile) -> None:
    tracked_by = _user()
    tracked: dict[str, Any] = {}
    identified: list[tuple[str, Any]] = []
    refused = 0
    for field, value in _hostile_values(60):
        if field == "properties":
            message_id = f"hostile-{uuid.uuid4()}"
            call = {"userId": tracked_by, "event": "hostile", "messageId": message_id}
            response = await _post(hostile, "/v1/track", {**call, field: value})
        else:
            user_id = _user()
            response = await _post(hostile, "/v1/identify", {"userId": user_id, field: value})
        assert response.status_code in (200, 400), response.text[:300]
        if response.status_code == 400:
            assert response.json()["error"]["field"].startswith(field), response.text[:300]
            refused += 1
        elif field == "properties":
            tracked[message_id] = value
        else:
            identified.append((user_id, value))
    print(f"\n{refused} refused, {len(tracked) + len(identified)} accepted")
    if tracked:
        events = await _events(hostile, tracked_by, len(tracked))
        assert {e["message_id"]: e["properties"] for e in events} == tracked
    for user_id, traits in identified:
        assert (await _traits(hostile, user_id, traits))["h"] == traits["h"]
