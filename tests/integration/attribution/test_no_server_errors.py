"""Whatever a client sends to any attribution route, the service answers without a server error."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.integration.attribution.harness import AttributionHarness
from tests.integration.openapi_fuzz import (
    Call,
    assert_no_server_error,
    calls,
    long_text,
    operations_of,
    url_nasty,
    url_text,
    values_for,
    wrong_tokens,
)

pytestmark = pytest.mark.integration

_nasty = url_nasty | st.sampled_from(["\ud800", "x\udfffy", "\x00"])
_text = st.text(max_size=30) | _nasty | long_text
_numbers = (
    st.integers()
    | st.sampled_from([2**63, -(2**63) - 1, 10**30, 10**400, 0, -1])
    | st.floats(allow_nan=False, allow_infinity=False)
)
_json = st.recursive(
    st.none() | st.booleans() | _numbers | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
_durations = (
    st.sampled_from(
        ["P7D", "PT12H", "P1W", "P", "PT", "P1M", "P0D", "P-1D", "P99999999D", "PT1.5.5S", "p1d"]
    )
    | _json
)
_query_values = st.one_of(
    st.sampled_from(
        [
            "",
            "channel",
            "journey",
            "variant",
            "node",
            "2025-03-01T00:00:00Z",
            "2025-03-01",
            "2025-03-01T00:00:00",
            "9999-12-31T23:59:59+14:00",
            "0",
            "-1",
            "null",
        ]
    ),
    url_text,
    url_nasty,
)


def _bodies() -> st.SearchStrategy[bytes]:
    filters = st.lists(
        st.fixed_dictionaries(
            {"property": _text | _json},
            optional={
                "op": st.sampled_from(["eq", "neq", "gt", "in", "contains", "exists"]) | _json,
                "value": _json,
            },
        ),
        max_size=3,
    )
    definition = st.fixed_dictionaries(
        {"name": st.text(min_size=1, max_size=20) | _json, "event": st.just("purchase") | _json},
        optional={
            "id": st.uuids().map(lambda u: f"cnv_fz_{u.hex[:12]}") | _text | _json,
            "filter": filters | _json,
            "value_property": st.just("revenue") | _json,
            "currency_property": st.just("currency") | _json,
            "currency": st.sampled_from(["CNY", "usd", "EURO"]) | _json,
            "window": _durations,
            "half_life": _durations,
            "attribution_model": st.sampled_from(
                ["last_touch", "first_touch", "linear", "time_decay", "position_based", "markov"]
            )
            | _json,
            "touch_types": st.lists(
                st.sampled_from(["message.sent", "message.clicked", "message.failed"]), max_size=3
            )
            | _json,
            "extra": _json,
        },
    ).map(json.dumps)
    garbage = st.binary(max_size=40) | st.sampled_from([b"", b"{", b"\xff"])
    return (definition | _json.map(json.dumps)).map(str.encode) | garbage


def _calls(operations: Any, known: str, admin: str) -> st.SearchStrategy[Call]:
    missing = st.uuids().map(lambda u: f"cnv_missing_{u.hex}")
    return calls(
        operations,
        path_values=st.one_of(
            st.just(known),
            st.sampled_from(["channel", "journey", "node", "variant"]),
            missing,
            url_text,
            url_nasty,
            long_text,
        ),
        delete_path_values=missing | url_text,
        query_values=lambda schema: values_for(schema, _query_values),
        tokens=st.one_of(st.just(admin), st.just(admin), st.none(), wrong_tokens),
        bodies=_bodies(),
    )


def test_any_request_to_any_attribution_route_gets_no_server_error(
    attribution_service: AttributionHarness,
) -> None:
    admin = attribution_service.stack.admin_token
    with httpx.Client(base_url=attribution_service.process.url, timeout=30) as client:
        operations = operations_of(client.get("/openapi.json").json())
        assert {(o.method, o.path) for o in operations} >= {
            ("GET", "/reports/{dimension}"),
            ("GET", "/reports/markov"),
            ("GET", "/insights"),
            ("PUT", "/conversions/{conversion_id}"),
        }
        known = f"cnv_fz_known_{uuid.uuid4().hex[:8]}"
        created = client.post(
            "/conversions",
            json={"id": known, "name": known, "event": "purchase"},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert created.status_code == 201, created.text

        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
        @given(call=_calls(operations, known, admin))
        @example(Call("GET", "/conversions/%00", (), None, admin))
        @example(Call("GET", "/reports/journey", (("journey_id", "\x00"),), None, admin))
        @example(
            Call("GET", "/reports/channel", (("from", "0001-01-01T00:00:00+14:00"),), None, admin)
        )
        @example(Call("POST", "/conversions", (), b'{"name": "\\u0000", "event": "e"}', admin))
        @example(
            Call(
                "POST",
                "/conversions",
                (),
                b'{"name": "n", "event": "e", "window": "P99999W"}',
                admin,
            )
        )
        def send(call: Call) -> None:
            headers = {"Content-Type": "application/json"} if call.body is not None else {}
            if call.token is not None:
                headers["Authorization"] = f"Bearer {call.token}"
            response = client.request(
                call.method,
                call.url,
                params=httpx.QueryParams(call.params),
                content=call.body,
                headers=headers,
            )
            assert_no_server_error(response)

        send()
