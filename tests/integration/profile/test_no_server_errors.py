"""Whatever a client sends to any profile route, the service answers it without a server error."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from libs.common.events import IngestIdentify
from libs.devstack.pytest_plugin import TEST_ADMIN_TOKEN
from tests.integration.profile.harness import ProfileService, timing, unique

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Operation:
    """One method on one path of the service's OpenAPI document."""

    method: str
    path: str
    path_params: tuple[str, ...]
    query_params: tuple[tuple[str, dict[str, Any]], ...]
    has_body: bool


@dataclass(frozen=True)
class Call:
    method: str
    url: str
    params: tuple[tuple[str, str], ...]
    body: bytes | None
    token: str | None


def operations_of(spec: dict[str, Any]) -> list[Operation]:
    found = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
            found.append(
                Operation(
                    method.upper(),
                    path,
                    tuple(re.findall(r"{([^}]+)}", path)),
                    tuple((p["name"], p["schema"]) for p in parameters if p["in"] == "query"),
                    "requestBody" in operation,
                )
            )
    return found


# Text a URL can carry (no surrogates); bodies also get lone surrogates and NULs via JSON escapes.
_url_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
_long_text = st.text(st.characters(max_codepoint=0x7F), min_size=300, max_size=2000)
_nasty = st.sampled_from(["\x00", "a\x00b", "\u202e", "\ufeff", " ", "", "%", "/", "..", "?#"])
_numbers = st.integers() | st.sampled_from(
    [2**63 - 1, 2**63, -(2**63) - 1, 10**30, -(10**30), 10**400, 0, -1]
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | _numbers
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | _nasty,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
_kinds = st.sampled_from(["user_id", "anonymous_id", "email", "phone", "", "traits", "USER_ID"])
_query_values = st.one_of(
    _numbers.map(str),
    st.floats().map(str),
    st.sampled_from(["", "-1", "0", "1.5", "1e3", "NaN", "true", "null", "9" * 40]),
    st.tuples(_kinds, _url_text).map(":".join),
    st.tuples(_kinds, _nasty).map(":".join),
    st.tuples(_kinds, _long_text).map(":".join),
    st.sampled_from(["email:a@b.c", "email:not-an-email", "phone:+1 (555) 010-9999", "::", ":"]),
    _url_text,
    _nasty,
)


def _integers(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    """In range, at and past the bounds, huge and negative, as the query string carries them."""
    bounds = [schema, *schema.get("anyOf", [])]
    low = next((b["minimum"] for b in bounds if "minimum" in b), -(2**63))
    high = next((b["maximum"] for b in bounds if "maximum" in b), 2**63 - 1)
    edges = [low - 1, low, high, high + 1, 2**63 - 1, 2**63, 10**30, -1, 0]
    return st.one_of(st.integers(low, high), st.sampled_from(edges)).map(str)


def _values_for(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    types = {b.get("type") for b in [schema, *schema.get("anyOf", [])]}
    return st.one_of(_integers(schema), _query_values) if "integer" in types else _query_values


def _calls(
    operations: list[Operation], known: list[str], identifiers: list[str]
) -> st.SearchStrategy[Call]:
    missing = st.uuids().map(lambda u: f"prf_{u.hex}")
    found = st.sampled_from(known)
    path_values = st.one_of(found, found, missing, _url_text, _nasty, _long_text)
    wrong = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
    tokens = st.one_of(*[st.just(TEST_ADMIN_TOKEN)] * 3, st.none(), wrong)
    garbage = st.binary(max_size=40) | st.sampled_from([b"", b"{", b"\xff"])
    bodies = _json.map(lambda value: json.dumps(value).encode()) | garbage

    @st.composite
    def call(draw: st.DrawFn) -> Call:
        operation = draw(st.sampled_from(operations))
        url = operation.path
        for name in operation.path_params:
            # Erasing the known profile would leave nothing for the rest to find.
            value = draw(path_values if operation.method != "DELETE" else missing | _url_text)
            url = url.replace(f"{{{name}}}", quote(value, safe=""))
        optional = {
            name: _values_for(schema) | st.sampled_from(identifiers)
            for name, schema in [*operation.query_params, ("unknown", {})]
        }
        params = tuple(draw(st.fixed_dictionaries({}, optional=optional)).items())
        body = draw(bodies if operation.has_body else st.none() | bodies)
        return Call(operation.method, url, params, body, draw(tokens))

    return call()


def assert_no_server_error(response: httpx.Response) -> None:
    """Below 500, and a 4xx says why in the one error format."""
    request = response.request
    seen = f"{request.method} {request.url} {request.content[:300]!r} -> {response.text[:500]}"
    assert response.status_code < 500, seen
    if 400 <= response.status_code < 500:
        error = response.json()["error"]
        assert set(error) == {"code", "message", "field"}, seen
        assert isinstance(error["code"], str) and error["code"], seen
        assert isinstance(error["message"], str) and error["message"], seen
        assert error["field"] is None or isinstance(error["field"], str), seen


async def test_any_request_to_any_profile_route_gets_no_server_error(
    profile_service: ProfileService,
) -> None:
    # A real profile with events, so ids, paging and lookups also reach the found paths.
    user_id = unique("fuzz")
    await profile_service.publish(
        IngestIdentify(messageId=unique("identify"), userId=user_id, traits={}, **timing(0))
    )
    profile = await profile_service.wait_for_profile(f"user_id:{user_id}")
    identifiers: list[str] = profile["identifiers"]

    fuzz(profile_service.process.url, [profile["id"]], identifiers)


def fuzz(url: str, known: list[str], identifiers: list[str]) -> None:
    """Every operation of the OpenAPI document; blocking is harmless, the service is a process."""
    admin = TEST_ADMIN_TOKEN
    with httpx.Client(base_url=url, timeout=30) as client:
        operations = operations_of(client.get("/openapi.json").json())
        assert {(o.method, o.path) for o in operations} >= {
            ("GET", "/profiles"),
            ("GET", "/profiles/{profile_id}/events"),
        }

        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
        @given(call=_calls(operations, known, identifiers))
        # The 500s this test found: a NUL reached PostgreSQL, a cursor overflowed bigint.
        @example(Call("GET", "/profiles", (("identifier", "user_id:\x00"),), None, admin))
        @example(
            Call("GET", f"/profiles/{known[0]}/events", (("before", str(2**63)),), None, admin)
        )
        def send(call: Call) -> None:
            headers = {"Content-Type": "application/json"} if call.body is not None else {}
            if call.token is not None:
                headers["Authorization"] = f"Bearer {call.token}"
            response = client.request(
                call.method, call.url, params=call.params, content=call.body, headers=headers
            )
            assert_no_server_error(response)

        send()
