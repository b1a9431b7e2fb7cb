"""Whatever a client sends to any content route, the service answers it without a server error."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.integration.content.harness import ContentHarness, email_template
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

pytestmark = pytest.mark.integration

_nasty = url_nasty | st.sampled_from(["\ud800", "x\udfffy"])
_text = st.text(max_size=30) | _nasty | long_text
_liquid = st.sampled_from(
    [
        "{{ profile.traits.first_name }}",
        "{% if x %}",
        "{{ (1..100000000) | join }}",
        "{% for i in (1..10000000) %}x{% endfor %}",
        "{{ profile.__class__ }}",
        "{{ 'x' | nope }}",
        "{% render 'other' %}",
        "{% include 'other' %}",
        "}}{{",
    ]
)
_numbers = st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.just(10**400)
_json = st.recursive(
    st.none() | st.booleans() | _numbers | _text | _liquid,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
_fields = ("subject", "html", "text", "title", "body", "description", "url", "data", "payload")


def _variants() -> st.SearchStrategy[Any]:
    field_values = _liquid | _text | _json
    variant = st.fixed_dictionaries(
        {"id": st.sampled_from(["a", "b"]) | _text},
        optional={name: field_values for name in _fields},
    )
    return st.lists(variant | _json, max_size=3) | _json


def _bodies(template_ids: list[str]) -> st.SearchStrategy[bytes]:
    templates = st.fixed_dictionaries(
        {
            "name": st.text(min_size=1, max_size=20) | _json,
            "channel": st.sampled_from(["email", "sms", "push", "webhook", "wecom", "wechat"])
            | _text,
            "variants": _variants(),
        },
        optional={
            "id": st.sampled_from(template_ids) | _text,
            "defaults": st.dictionaries(_text | st.just("profile.traits.x"), _json) | _json,
            "reward": st.sampled_from(["clicks", "conversions"]) | _json,
            "holdout_share": _numbers | _json,
        },
    )
    previews = st.fixed_dictionaries(
        {},
        optional={
            "profile_id": _text | _json,
            "profile": st.fixed_dictionaries({}, optional={"traits": _json, "tags": _json}) | _json,
            "variables": st.dictionaries(_text, _json) | _json,
            "variant_id": st.sampled_from(["a", "b"]) | _text,
        },
    )
    suggestions = st.fixed_dictionaries(
        {"channel": st.sampled_from(["email", "sms", "push", "webhook"]) | _text},
        optional={"brief": _text | _json, "count": _numbers | _json},
    )
    documents = (templates | previews | suggestions | _json).map(json.dumps)
    garbage = st.binary(max_size=40) | st.sampled_from([b"", b"{", b"\xff"])
    return documents.map(str.encode) | garbage


def _calls(
    operations: list[Operation], template_ids: list[str], admin: str
) -> st.SearchStrategy[Call]:
    known = st.sampled_from(template_ids)
    missing = st.uuids().map(lambda u: f"tpl_missing_{u.hex}")
    return calls(
        operations,
        path_values=st.one_of(known, known, missing, url_text, url_nasty, long_text),
        delete_path_values=missing | url_text,
        query_values=lambda schema: values_for(schema, url_text),
        tokens=st.one_of(st.just(admin), st.just(admin), st.just(admin), st.none(), wrong_tokens),
        bodies=_bodies(template_ids),
    )


def test_any_request_to_any_content_route_gets_no_server_error(
    content_service: ContentHarness,
) -> None:
    admin = content_service.stack.admin_token
    with httpx.Client(base_url=content_service.process.url, timeout=30) as client:
        operations = operations_of(client.get("/openapi.json").json())
        assert {(o.method, o.path) for o in operations} >= {
            ("GET", "/templates/{template_id}"),
            ("POST", "/templates/{template_id}/preview"),
            ("POST", "/copy/suggestions"),
        }
        known = f"tpl_fz_{uuid.uuid4().hex[:8]}"
        created = client.post(
            "/templates", json=email_template(known), headers={"Authorization": f"Bearer {admin}"}
        )
        assert created.status_code == 201, created.text

        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
        @given(call=_calls(operations, [known], admin))
        @example(Call("GET", "/templates/%00", (), None, admin))
        @example(
            Call(
                "POST",
                f"/templates/{known}/preview",
                (),
                b'{"variables": {"coupon_code": "\\u0000"}}',
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
