"""Whatever a client sends to any segment route, the service answers it without a server error."""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.integration.segment.harness import SegmentHarness

pytestmark = pytest.mark.integration

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
_url_nasty = st.sampled_from(["\x00", "a\x00b", "\u202e", "\ufeff", " ", "", "%", "/", "..", "?#"])
_nasty = _url_nasty | st.sampled_from(["\ud800", "x\udfffy"])
_text = st.text(max_size=30) | _nasty | _long_text
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
    return encoded | raw | _url_text | st.sampled_from(["=", "====", "!!", "a", "ab=c"])


_query_values = st.one_of(
    _numbers.map(str),
    st.sampled_from(["", "-1", "0", "1.5", "1e3", "NaN", "true", "null", "[]", "9" * 40]),
    _url_text,
    _url_nasty,
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
    operations: list[Operation], segment_ids: list[str], admin: str
) -> st.SearchStrategy[Call]:
    known = st.sampled_from(segment_ids)
    missing = st.uuids().map(lambda u: f"seg_missing_{u.hex}")
    path_values = st.one_of(known, known, missing, _url_text, _url_nasty, _long_text)
    wrong = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
    tokens = st.one_of(st.just(admin), st.just(admin), st.just(admin), st.none(), wrong)
    bodies = _bodies(segment_ids)

    @st.composite
    def call(draw: st.DrawFn) -> Call:
        operation = draw(st.sampled_from(operations))
        url = operation.path
        for name in operation.path_params:
            # Deleting the known segments would leave nothing for the rest to find.
            values = path_values if operation.method != "DELETE" else missing | _url_text
            url = url.replace(f"{{{name}}}", quote(draw(values), safe=""))
        optional = {
            name: _values_for(schema) for name, schema in [*operation.query_params, ("unknown", {})]
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
