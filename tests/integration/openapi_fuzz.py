"""Fuzzing a running service through its OpenAPI document: every route, whatever it is sent."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import strategies as st

METHODS = ("get", "post", "put", "patch", "delete")

# Text a URL can carry (no surrogates); bodies also get lone surrogates and NULs via JSON escapes.
url_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
long_text = st.text(st.characters(max_codepoint=0x7F), min_size=300, max_size=2000)
url_nasty = st.sampled_from(["\x00", "a\x00b", "\u202e", "\ufeff", " ", "", "%", "/", "..", "?#"])
wrong_tokens = st.text(
    st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40
)


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


def integers_for(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    """In range, at and past the bounds, huge and negative, as the query string carries them."""
    bounds = [schema, *schema.get("anyOf", [])]
    low = next((b["minimum"] for b in bounds if "minimum" in b), -(2**63))
    high = next((b["maximum"] for b in bounds if "maximum" in b), 2**63 - 1)
    edges = [low - 1, low, high, high + 1, 2**63 - 1, 2**63, 10**30, -1, 0]
    return st.one_of(st.integers(low, high), st.sampled_from(edges)).map(str)


def values_for(schema: dict[str, Any], garbage: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    types = {b.get("type") for b in [schema, *schema.get("anyOf", [])]}
    return st.one_of(integers_for(schema), garbage) if "integer" in types else garbage


def calls(
    operations: list[Operation],
    *,
    path_values: st.SearchStrategy[str],
    delete_path_values: st.SearchStrategy[str],
    query_values: Callable[[dict[str, Any]], st.SearchStrategy[str]],
    tokens: st.SearchStrategy[str | None],
    bodies: st.SearchStrategy[bytes],
) -> st.SearchStrategy[Call]:
    """Requests to any operation; DELETE gets its own ids so the known ones survive the run."""

    @st.composite
    def call(draw: st.DrawFn) -> Call:
        operation = draw(st.sampled_from(operations))
        url = operation.path
        values = path_values if operation.method != "DELETE" else delete_path_values
        for name in operation.path_params:
            url = url.replace(f"{{{name}}}", quote(draw(values), safe=""))
        optional = {
            name: query_values(schema)
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
