"""Schemathesis over every operation of every service's OpenAPI document, on the running loop:
no server error, and every answer one the document declares (status, content type, body).

Run alone with `pytest tests/integration/hostile/test_openapi_schemathesis.py`; docs/security.md
says what it covers. Requests that once broke a service are replayed as they were, since
generated data seldom finds them again.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.integration.closed_loop.harness import unique
from tests.integration.content.harness import email_template
from tests.integration.hostile.conftest import SERVICES, Hostile
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration

_CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Per operation: 62 operations in both modes take about 30 s. Hypothesis is derandomised, but
# schemathesis also reuses values from earlier answers (fresh ids), so runs differ a little;
# every failure comes with the curl command that reproduces it.
_EXAMPLES = {GenerationMode.POSITIVE: 10, GenerationMode.NEGATIVE: 6}
# The loop's sends go through these channels; a fuzzed PUT or DELETE must leave them alone.
_LOOP_CHANNELS = frozenset({"webhook", "email"})
# uvicorn refuses a request line past 80 KiB itself (400, text/plain) before any route sees it:
# the server's limit, not the API's.
_MAX_PATH_BYTES = 64 * 1024
Operation = APIOperation[Any, Any, Any, Any]


@dataclass
class Target:
    """One service to fuzz: where it runs, its credentials, the ids worth hitting, and the
    calls that put back what fuzzing may change that the rest of the loop relies on."""

    url: str
    admin: str
    write_key: str = ""
    known: dict[str, str] = field(default_factory=dict)
    restore: list[tuple[str, str, Any]] = field(default_factory=list)

    def headers_for(self, path: str) -> dict[str, str]:
        """Ingest's Segment routes take a source's write key; every other route the admin's."""
        if path.startswith("/v1/"):
            basic = base64.b64encode(f"{self.write_key}:".encode()).decode()
            return {"Authorization": f"Basic {basic}"}
        return {"Authorization": f"Bearer {self.admin}"}


@pytest.mark.parametrize("service", SERVICES)
async def test_every_operation_answers_as_its_openapi_document_says(
    hostile: Hostile, service: str
) -> None:
    target = await _target(hostile, service)
    started = time.monotonic()
    try:
        # In a thread: the session's event loop keeps serving the loop's fake providers.
        failures = await asyncio.to_thread(_fuzz, target)
    finally:
        for method, path, body in target.restore:
            await hostile.loop.call(service, method, path, json=body)
    print(f"\n{service}: every operation fuzzed in {time.monotonic() - started:.1f}s")
    assert not failures, "\n\n".join(failures)


# (service, method, path, query, raw JSON body): each once a 500. `{name}` is a known id.
_ONCE_BROKEN: list[tuple[str, str, str, dict[str, str], str | None]] = [
    ("ingest", "POST", "/sources", {}, '{"name": "a\\u0000b"}'),
    ("ingest", "POST", "/sources", {}, '{"name": "\\ud800"}'),
    ("profile", "GET", "/profiles", {"identifier": "user_id:\x00"}, None),
    ("profile", "GET", "/profiles/{profile_id}/events", {"before": str(2**63)}, None),
    ("segment", "GET", "/segments/%00", {}, None),
    ("segment", "GET", "/segments/{segment_id}/members", {"cursor": "AA=="}, None),
    ("segment", "POST", "/segments", {}, '{"name": "\\u0000", "conditions": {"tag": "v"}}'),
    ("segment", "POST", "/segments/preview", {}, '{"conditions": {"tag": "\\ud800"}}'),
    (
        "segment",
        "POST",
        "/segments/preview",
        {},
        '{"conditions": ' + '{"not": ' * 3000 + '{"tag": "vip"}' + "}" * 3000 + "}",
    ),
    ("journey", "GET", "/journeys/%00", {}, None),
    ("journey", "POST", "/journeys", {}, '{"name": "\\u0000"}'),
    (
        "journey",
        "POST",
        "/journeys",
        {},
        '{"name": "big", "entry": {"event": "e"}, "start": "s", "nodes": {"s": {"type": "send",'
        f' "channel": "email", "template_id": "t", "variables": {{"n": {2**64}}}}}}}}}',
    ),
    (
        "journey",
        "POST",
        "/journeys",
        {},
        '{"name": "deep", "entry": {"event": "e"}, "start": "b", "nodes": {"b": {"type": '
        '"branch", "default": null, "branches": [{"condition": '
        + '{"not": ' * 3000
        + '{"tag": "vip"}'
        + "}" * 3000
        + "}]}}}",
    ),
    ("content", "GET", "/templates/%00", {}, None),
    (
        "content",
        "POST",
        "/templates/{template_id}/preview",
        {},
        '{"variables": {"coupon_code": "\\u0000"}}',
    ),
    (
        "content",
        "POST",
        "/templates/{template_id}/preview",
        {},
        f'{{"variables": {{"n": {2**64}}}}}',
    ),
    ("dispatch", "GET", "/preferences/%00", {}, None),
    ("dispatch", "POST", "/receipts/sms", {}, '{"provider_message_id": "\\u0000"}'),
    ("attribution", "GET", "/conversions/%00", {}, None),
    ("attribution", "GET", "/reports/journey", {"journey_id": "\x00"}, None),
    ("attribution", "GET", "/reports/channel", {"from": "0001-01-01T00:00:00+14:00"}, None),
    ("attribution", "POST", "/conversions", {}, '{"name": "\\u0000", "event": "e"}'),
    ("attribution", "POST", "/conversions", {}, '{"name": "n", "event": "e", "window": "P99999W"}'),
]


@pytest.mark.parametrize("service", sorted({case[0] for case in _ONCE_BROKEN}))
async def test_requests_that_once_broke_a_service_are_refused_with_a_reason(
    hostile: Hostile, service: str
) -> None:
    target = await _target(hostile, service)
    async with httpx.AsyncClient(base_url=target.url, timeout=30) as client:
        for _, method, path, query, body in (c for c in _ONCE_BROKEN if c[0] == service):
            url = path.format(**target.known)
            response = await client.request(
                method,
                url,
                params=query,
                content=body.encode("utf-8", "surrogatepass") if body is not None else None,
                headers={**target.headers_for(url), "Content-Type": "application/json"},
            )
            seen = f"{method} {url} {query} {(body or '')[:120]!r}: {response.text[:300]}"
            assert 400 <= response.status_code < 500, seen
            assert set(response.json()["error"]) == {"code", "message", "field"}, seen


async def _target(hostile: Hostile, service: str) -> Target:
    target = Target(hostile.loop.processes[service].url, hostile.stack.admin_token)
    prepare = _PREPARE.get(service)
    if prepare is not None:
        await prepare(hostile, target)
    return target


async def _ingest(hostile: Hostile, target: Target) -> None:
    # Sources of its own: a fuzzed disable or delete must not cut the loop's write key off.
    path_source = await hostile.loop.call("ingest", "POST", "/sources", json={"name": "fz"})
    auth_source = await hostile.loop.call("ingest", "POST", "/sources", json={"name": "fz"})
    target.known["source_id"] = path_source["id"]
    target.write_key = auth_source["write_key"]


async def _profile(hostile: Hostile, target: Target) -> None:
    user_id = unique("fuzz")
    await hostile.loop.track("identify", userId=user_id, messageId=unique("msg"), traits={})
    found: list[dict[str, Any]] = []

    async def profiled() -> bool:
        profile = await hostile.loop.profile_of(f"user_id:{user_id}")
        found[:] = [profile] if profile else []
        return bool(found)

    await wait_for(profiled, within=30, what=f"the profile of {user_id}")
    target.known["profile_id"] = found[0]["id"]


async def _segment(hostile: Hostile, target: Target) -> None:
    segment_id = unique("seg_fuzz")
    body = {"id": segment_id, "name": segment_id, "conditions": {"tag": "vip"}}
    await hostile.loop.call("segment", "POST", "/segments", json=body)
    target.known["segment_id"] = segment_id


async def _journey(hostile: Hostile, target: Target) -> None:
    # Entered by an event no one sends: publishing it by fuzzing sends nothing.
    journey_id = unique("jrn_fuzz")
    body = {
        "id": journey_id,
        "name": journey_id,
        "entry": {"event": unique("never_sent")},
        "start": "done",
        "nodes": {"done": {"type": "exit"}},
    }
    await hostile.loop.call("journey", "POST", "/journeys", json=body)
    target.known["journey_id"] = journey_id


async def _content(hostile: Hostile, target: Target) -> None:
    template_id = unique("tpl_fuzz")
    await hostile.loop.call("content", "POST", "/templates", json=email_template(template_id))
    target.known["template_id"] = template_id


async def _dispatch(hostile: Hostile, target: Target) -> None:
    name = unique("fuzz")
    url = f"{hostile.loop.providers_url}/hook/{name}"
    channel = {"name": name, "kind": "webhook", "config": {"url": url, "secret": "s"}}
    await hostile.loop.call("dispatch", "POST", "/channels", json=channel)
    target.known["name"] = name
    # Fuzzed caps and quiet hours would hold back the loop's sends in the tests after this one.
    policies = await hostile.loop.call("dispatch", "GET", "/policies")
    target.restore.append(("PUT", "/policies", policies))


async def _attribution(hostile: Hostile, target: Target) -> None:
    conversion_id = unique("cnv_fuzz")
    body = {"id": conversion_id, "name": conversion_id, "event": "purchase"}
    await hostile.loop.call("attribution", "POST", "/conversions", json=body)
    target.known["conversion_id"] = conversion_id


_PREPARE: Mapping[str, Callable[[Hostile, Target], Awaitable[None]]] = {
    "ingest": _ingest,
    "profile": _profile,
    "segment": _segment,
    "journey": _journey,
    "content": _content,
    "dispatch": _dispatch,
    "attribution": _attribution,
}


def _fuzz(target: Target) -> list[str]:
    """Every operation in both modes; the failures, one text each (empty: all answered well)."""
    spec = httpx.get(f"{target.url}/openapi.json", timeout=30).json()
    failures = []
    for result in schemathesis.openapi.from_dict(spec).get_all_operations():
        if not isinstance(result, Ok):
            failures.append(f"an operation schemathesis cannot read: {result.err()}")
            continue
        operation = result.ok()
        for mode, examples in _EXAMPLES.items():
            try:
                _fuzz_operation(target, operation, mode, examples)
            except Unsatisfiable:
                # Nothing in this operation can be made invalid (it takes no parameters).
                assert mode is GenerationMode.NEGATIVE, operation.label
            except (FailureGroup, Exception) as error:
                failures.append(f"{operation.label} ({mode.value}): {error}")
    return failures


def _fuzz_operation(
    target: Target, operation: Operation, mode: GenerationMode, examples: int
) -> None:
    """Half the cases, where the path has an id, name a known object (not for DELETE: the rest
    of the run needs it); the others whatever schemathesis makes up."""
    strategy = operation.as_strategy(mode)
    known = {
        name: value
        for name, value in target.known.items()
        if f"{{{name}}}" in operation.path and operation.method.upper() != "DELETE"
    }
    if known:
        strategy = strategy | operation.as_strategy(mode, path_parameters=known)
    headers = target.headers_for(operation.path)

    @settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy.filter(_worth_sending))
    def call(case: Case[Operation]) -> None:
        case.call_and_validate(base_url=target.url, headers=headers, checks=_CHECKS, timeout=30)

    call()


def _worth_sending(case: Case[Operation]) -> bool:
    """Not to the loop's own channels, and a path the HTTP server lets through to the app."""
    values = (case.path_parameters or {}).values()
    path_bytes = sum(len(quote(str(value), safe="")) for value in values)
    return path_bytes <= _MAX_PATH_BYTES and not _LOOP_CHANNELS & {str(v) for v in values}
