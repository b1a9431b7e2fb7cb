"""Whatever a client sends to any profile route, the service answers it without a server error."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from libs.common.events import IngestIdentify
from libs.devstack.pytest_plugin import TEST_ADMIN_TOKEN
from tests.integration.openapi_fuzz import (
    Call,
    Operation,
    assert_no_server_error,
    calls,
    long_text,
    operations_of,
    url_nasty,
    url_text,
    values_for,
    wrong_tokens,
)
from tests.integration.profile.harness import ProfileService, timing, unique

pytestmark = [pytest.mark.integration, pytest.mark.asyncio(loop_scope="session")]

_numbers = st.integers() | st.sampled_from(
    [2**63 - 1, 2**63, -(2**63) - 1, 10**30, -(10**30), 10**400, 0, -1]
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | _numbers
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | url_nasty,
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
    st.tuples(_kinds, url_text).map(":".join),
    st.tuples(_kinds, url_nasty).map(":".join),
    st.tuples(_kinds, long_text).map(":".join),
    st.sampled_from(["email:a@b.c", "email:not-an-email", "phone:+1 (555) 010-9999", "::", ":"]),
    url_text,
    url_nasty,
)


def _calls(
    operations: list[Operation], known: list[str], identifiers: list[str]
) -> st.SearchStrategy[Call]:
    missing = st.uuids().map(lambda u: f"prf_{u.hex}")
    found = st.sampled_from(known)
    garbage = st.binary(max_size=40) | st.sampled_from([b"", b"{", b"\xff"])
    return calls(
        operations,
        path_values=st.one_of(found, found, missing, url_text, url_nasty, long_text),
        # Erasing the known profile would leave nothing for the rest to find.
        delete_path_values=missing | url_text,
        query_values=lambda schema: (
            values_for(schema, _query_values) | st.sampled_from(identifiers)
        ),
        tokens=st.one_of(*[st.just(TEST_ADMIN_TOKEN)] * 3, st.none(), wrong_tokens),
        bodies=_json.map(lambda value: json.dumps(value).encode()) | garbage,
    )


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
