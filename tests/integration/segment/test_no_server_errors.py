"""Whatever a client sends to any segment route, the service answers it without a server error."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

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
from tests.integration.segment.harness import SegmentHarness

pytestmark = pytest.mark.integration

_nasty = url_nasty | st.sampled_from(["\ud800", "x\udfffy"])
_text = st.text(max_size=30) | _nasty | long_text
_numbers = (
    st.integers()
    | st.sampled_from([2**63, -(2**63) - 1, 10**30, -(10**30), 10**400, 0, -1])
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([1e308, -1e308, 5e-324])
)
_json = st.recursive(
    st.none() | st.booleans() | _numbers | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)


def _cursors() -> st.SearchStrategy[str]:
    encoded = (st.text(max_size=20) | _nasty).map(
        lambda s: base64.urlsafe_b64encode(s.encode("utf-8", "surrogatepass")).decode()
    )
    raw = st.binary(max_size=20).map(lambda b: base64.urlsafe_b64encode(b).decode())
    return encoded | raw | url_text | st.sampled_from(["=", "====", "!!", "a", "ab=c"])


_query_values = st.one_of(
    _numbers.map(str),
    st.sampled_from(["", "-1", "0", "1.5", "1e3", "NaN", "true", "null", "[]", "9" * 40]),
    url_text,
    url_nasty,
    _cursors(),
)


def _durations() -> st.SearchStrategy[Any]:
    digits = st.integers(min_value=0, max_value=10**20).map(str)
    shaped = st.tuples(digits, st.sampled_from(["W", "D", "TH", "TM", "TS"])).map(
        lambda p: f"P{p[0]}{p[1]}" if p[1] in "WD" else f"PT{p[0]}{p[1][1]}"
    )
    garbage = st.sampled_from(
        ["P", "PT", "P1Y", "P1M", "30 days", "PT1.5.5S", "P-1D", "PT0S", "P0D", "p1d", "P1DT"]
    )
    return shaped | garbage | _json


def _condition_trees(segment_ids: list[str]) -> st.SearchStrategy[Any]:
    names = st.sampled_from(segment_ids) | _text | _json
    ops = st.sampled_from(["eq", "neq", "gt", "gte", "lt", "lte", "in", "contains", "exists"])
    op = ops | _json
    comparison = st.dictionaries(st.sampled_from(["eq", "gt", "gte", "lt", "lte"]), _numbers)
    comparison_or_not = comparison | _json
    where = st.lists(
        st.fixed_dictionaries({"property": names}, optional={"op": op, "value": _json}),
        max_size=3,
    )
    extra = st.dictionaries(st.sampled_from(["extra", "kind", "op", "value"]) | _text, _json)
    leaves = st.one_of(
        st.fixed_dictionaries({"trait": names}, optional={"op": op, "value": _json}),
        st.fixed_dictionaries({"tag": names}),
        st.fixed_dictionaries({"lifecycle_stage": names | st.lists(names, max_size=3)}),
        st.fixed_dictionaries({"score": names}, optional={"op": op, "value": _numbers | _json}),
        st.fixed_dictionaries({"in_segment": names}),
        st.fixed_dictionaries(
            {"event": names},
            optional={
                "count": comparison_or_not,
                "sum": comparison.map(lambda c: {"property": "amount", **c}) | _json,
                "within": _durations(),
                "where": where | _json,
            },
        ),
        extra,
        _json,
    )
    with_extra = st.tuples(leaves, extra).map(
        lambda pair: {**pair[0], **pair[1]} if isinstance(pair[0], dict) else pair[0]
    )
    return st.recursive(
        leaves | with_extra,
        lambda children: st.one_of(
            st.lists(children, max_size=4).map(lambda c: {"all": c}),
            st.lists(children, max_size=4).map(lambda c: {"any": c}),
            children.map(lambda c: {"not": c}),
            st.tuples(children, children).map(lambda c: {"all": c[0], "any": [c[1]]}),
        ),
        max_leaves=10,
    )


def _deeply_nested(leaf: str) -> st.SearchStrategy[str]:
    """Condition JSON nested hundreds deep, written as text: json.dumps would itself recurse."""
    return st.tuples(
        st.integers(min_value=30, max_value=3000), st.sampled_from(["not", "all"])
    ).map(
        lambda p: (
            (f'{{"{p[1]}": ' + ("[" if p[1] == "all" else "")) * p[0]
            + leaf
            + (("]" if p[1] == "all" else "") + "}") * p[0]
        )
    )


def _bodies(segment_ids: list[str]) -> st.SearchStrategy[bytes]:
    tree = _condition_trees(segment_ids).map(json.dumps)
    conditions = tree | _deeply_nested('{"tag": "vip"}') | _deeply_nested("[]")
    fields = st.fixed_dictionaries(
        {"name": st.text(min_size=1, max_size=20) | _json},
        optional={
            "id": st.sampled_from(segment_ids)
            | st.uuids().map(lambda u: f"seg_fz_{u.hex[:12]}")
            | _text
            | _json,
            "description": _text | _json,
            "extra": _json,
        },
    ).map(lambda f: json.dumps(f)[1:-1])
    segments = st.tuples(fields, conditions).map(
        lambda p: f'{{{p[0]}{", " if p[0] else ""}"conditions": {p[1]}}}'
    )
    previews = conditions.map(lambda c: f'{{"conditions": {c}}}')
    anything = _json.map(json.dumps)
    garbage = st.binary(max_size=40) | st.sampled_from([b"", b"{", b'{"conditions": }', b"\xff"])
    return (segments | previews | anything).map(str.encode) | garbage


def _calls(
    operations: list[Operation], segment_ids: list[str], admin: str
) -> st.SearchStrategy[Call]:
    known = st.sampled_from(segment_ids)
    missing = st.uuids().map(lambda u: f"seg_missing_{u.hex}")
    return calls(
        operations,
        path_values=st.one_of(known, known, missing, url_text, url_nasty, long_text),
        # Deleting the known segments would leave nothing for the rest to find.
        delete_path_values=missing | url_text,
        query_values=lambda schema: values_for(schema, _query_values),
        tokens=st.one_of(st.just(admin), st.just(admin), st.just(admin), st.none(), wrong_tokens),
        bodies=_bodies(segment_ids),
    )


def test_any_request_to_any_segment_route_gets_no_server_error(
    segment_service: SegmentHarness,
) -> None:
    admin = segment_service.stack.admin_token
    with httpx.Client(base_url=segment_service.process.url, timeout=30) as client:
        spec = client.get("/openapi.json").json()
        operations = operations_of(spec)
        assert {(o.method, o.path) for o in operations} >= {
            ("GET", "/segments/{segment_id}"),
            ("POST", "/segments/preview"),
        }
        known = f"seg_fz_known_{uuid.uuid4().hex[:8]}"
        created = client.post(
            "/segments",
            json={"id": known, "name": known, "conditions": {"tag": "vip"}},
            headers={"Authorization": f"Bearer {admin}"},
        )
        assert created.status_code == 201, created.text

        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
        @given(call=_calls(operations, [known], admin))
        # The 500s found: a NUL in the path or cursor reached PostgreSQL; bodies now refuse it too.
        @example(Call("GET", "/segments/%00", (), None, admin))
        @example(Call("GET", f"/segments/{known}/members", (("cursor", "AA=="),), None, admin))
        @example(
            Call("POST", "/segments", (), b'{"name": "\\u0000", "conditions": {"tag": "v"}}', admin)
        )
        @example(
            Call("POST", "/segments/preview", (), b'{"conditions": {"tag": "\\ud800"}}', admin)
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
