"""Whatever a client sends to any dispatch route, the service answers without a server error."""

from __future__ import annotations

import json

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.integration.dispatch.conftest import Dispatch
from tests.integration.openapi_fuzz import (
    Call,
    assert_no_server_error,
    calls,
    long_text,
    operations_of,
    url_nasty,
    url_text,
    wrong_tokens,
)

pytestmark = pytest.mark.integration

_text = st.text(max_size=30) | url_nasty | st.sampled_from(["\ud800", "x\udfffy"]) | long_text
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _text,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_text, children, max_size=4),
    max_leaves=12,
)
_kinds = st.sampled_from(["email", "webhook", "sms", "push", "wecom", "wechat"]) | _text
_configs = st.fixed_dictionaries(
    {},
    optional={
        "url": st.sampled_from(
            ["http://127.0.0.1:1/x", "http://169.254.169.254/", "http://[::1]:99999/", "ftp://x"]
        )
        | _text,
        "secret": _text,
        "host": _text,
        "port": st.integers(),
        "from_address": _text,
        "account_sid": _text,
        "auth_token": _text,
        "from_number": _text,
        "agent_id": st.integers() | _json,
    },
)
_bodies = st.one_of(
    st.fixed_dictionaries(
        {"kind": _kinds, "config": _configs | _json},
        optional={"name": _text | st.just("fz_chan"), "rate_per_second": _json},
    ).map(json.dumps),
    st.fixed_dictionaries({}, optional={"caps": _json, "quiet_hours": _json}).map(json.dumps),
    st.fixed_dictionaries({}, optional={"consent": _json, "unsubscribed": _json}).map(json.dumps),
    st.fixed_dictionaries({}, optional={"provider_message_id": _json, "status": _json}).map(
        json.dumps
    ),
    _json.map(json.dumps),
).map(lambda text: text.encode("utf-8", "surrogatepass")) | st.binary(max_size=40)


def test_any_request_to_any_dispatch_route_gets_no_server_error(dispatch: Dispatch) -> None:
    admin = dispatch.harness.stack.admin_token
    with httpx.Client(base_url=dispatch.harness.process.url, timeout=30) as client:
        operations = operations_of(client.get("/openapi.json").json())
        assert {(o.method, o.path) for o in operations} >= {
            ("POST", "/channels"),
            ("GET", "/c/{token}"),
            ("POST", "/receipts/{channel}"),
        }
        strategy = calls(
            operations,
            path_values=st.one_of(st.just("fz_chan"), url_text, url_nasty, long_text),
            delete_path_values=url_text,
            query_values=lambda schema: url_text,
            tokens=st.one_of(st.just(admin), st.just(admin), st.none(), wrong_tokens),
            bodies=_bodies,
        )

        @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
        @given(call=strategy)
        @example(Call("GET", "/preferences/%00", (), None, admin))
        @example(Call("POST", "/receipts/sms", (), b'{"provider_message_id": "\\u0000"}', admin))
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
                follow_redirects=False,
            )
            assert_no_server_error(response)

        send()
