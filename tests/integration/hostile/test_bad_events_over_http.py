"""The same badness through ingest's Segment API: a 4xx that says why, never a 500, and a
batch or import keeps its good calls."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from tests.integration.closed_loop.harness import now
from tests.integration.hostile.conftest import Hostile
from tests.integration.hostile.corpus import HUGE_STRING_BYTES, NESTING_LEVELS
from tests.integration.support import wait_for

pytestmark = pytest.mark.integration

_DEEP = "[" * NESTING_LEVELS + "]" * NESTING_LEVELS

# Bodies no JSON parser takes as a whole: the whole request is refused, batch or not.
WHOLE_BODY_BADNESS: dict[str, bytes] = {
    "not JSON": b"{not json",
    "invalid UTF-8": b'{"userId": "\xff\xfe", "event": "x", "type": "track"}',
    "10,000 levels of nesting": (
        '{"userId": "u", "event": "x", "type": "track", "properties": {"deep": ' + _DEEP + "}}"
    ).encode(),
    "1 MB string": json.dumps(
        {"userId": "u", "event": "x" * HUGE_STRING_BYTES, "type": "track"}
    ).encode(),
}

# Calls that are JSON but not a call ingest can accept: refused one by one.
CALL_BADNESS: dict[str, Any] = {
    "JSON list": [1, 2, 3],
    "JSON number": 42,
    "missing required fields": {"type": "track"},
    "wrong field types": {
        "type": "track",
        "userId": {"id": 1},
        "event": ["x"],
        "properties": "not an object",
        "timestamp": 5,
    },
    "a call over the size limit": {"type": "track", "userId": "u", "event": "x" * 64 * 1024},
    "year 9999 timestamp": {
        "type": "track",
        "userId": "u",
        "event": "x",
        "timestamp": "9999-12-31T23:59:59Z",
    },
    "year 1 timestamp": {
        "type": "track",
        "userId": "u",
        "event": "x",
        "timestamp": "0001-01-01T00:00:00Z",
    },
    "unknown call type": {"type": "hostile", "userId": "u", "event": "x"},
}


def _refused_with_a_reason(response: httpx.Response, what: str) -> str:
    seen = f"{what}: {response.status_code} {response.text[:300]}"
    assert 400 <= response.status_code < 500, seen
    error = response.json()["error"]
    assert isinstance(error["code"], str) and error["code"], seen
    assert isinstance(error["message"], str) and error["message"], seen
    return f"{response.status_code} {error['code']}"


async def _post(hostile: Hostile, path: str, body: bytes, **headers: str) -> httpx.Response:
    return await hostile.loop.ingest.post(
        path,
        content=body,
        headers={"content-type": "application/json", **headers},
        auth=httpx.BasicAuth(hostile.loop.write_key, ""),
    )


async def test_bad_single_calls_get_a_4xx_with_a_reason(hostile: Hostile) -> None:
    answers: dict[str, str] = {}
    failures: list[str] = []
    for kind, body in WHOLE_BODY_BADNESS.items():
        answers[kind] = _refused_with_a_reason(await _post(hostile, "/v1/track", body), kind)
    for kind, call in CALL_BADNESS.items():
        path = "/v1/track" if kind != "unknown call type" else "/v1/hostile"
        response = await _post(hostile, path, json.dumps(call).encode())
        try:
            answers[kind] = _refused_with_a_reason(response, kind)
        except AssertionError as error:
            answers[kind] = f"{response.status_code} (accepted)"
            failures.append(str(error))
    no_key = await hostile.loop.ingest.post("/v1/track", json={"userId": "u", "event": "x"})
    answers["no write key"] = _refused_with_a_reason(no_key, "no write key")
    print("\n" + "\n".join(f"/v1/track {kind:<28} -> {answer}" for kind, answer in answers.items()))
    assert not failures, "\n".join(failures)


async def test_a_batch_keeps_its_good_calls_and_says_why_the_others_were_refused(
    hostile: Hostile,
) -> None:
    first, second = f"good_{uuid.uuid4().hex[:10]}", f"good_{uuid.uuid4().hex[:10]}"
    bad = list(CALL_BADNESS.items())
    calls = [
        {"type": "identify", "userId": first, "traits": {"plan": "hostile"}, "timestamp": now()},
        *(call for _, call in bad),
        {"type": "track", "userId": second, "event": "survived", "timestamp": now()},
    ]
    response = await _post(hostile, "/v1/batch", json.dumps({"batch": calls}).encode())
    assert response.status_code == 200, response.text
    answer = response.json()
    rejected = {row["index"]: row for row in answer["rejected"]}
    print(
        "\n"
        + "\n".join(f"/v1/batch {k:<28} -> {rejected.get(i + 1)}" for i, (k, _) in enumerate(bad))
    )
    missed = [kind for index, (kind, _) in enumerate(bad, start=1) if index not in rejected]
    assert all(row["reason"] for row in rejected.values()), rejected
    for user_id in (first, second):

        async def kept(user_id: str = user_id) -> bool:
            return await hostile.loop.profile_of(f"user_id:{user_id}") is not None

        await wait_for(kept, within=30, what=f"the good call of {user_id} on its profile")
    assert not missed, f"bad calls the batch accepted: {missed}"
    assert answer["accepted"] == 2, answer

    for kind, body in WHOLE_BODY_BADNESS.items():
        wrapped = b'{"batch": [' + body + b"]}"
        _refused_with_a_reason(await _post(hostile, "/v1/batch", wrapped), f"batch of {kind}")
    for body in (b"[]", b"42", b'{"batch": 5}', b'{"batch": [1, 2]}'):
        _refused_with_a_reason(await _post(hostile, "/v1/batch", body), body.decode())


async def test_an_import_keeps_its_good_rows_and_says_why_the_others_were_refused(
    hostile: Hostile,
) -> None:
    good = f"import_{uuid.uuid4().hex[:10]}"
    rows = [
        json.dumps({"type": "identify", "userId": good, "timestamp": now()}).encode(),
        *(json.dumps(call).encode() for call in CALL_BADNESS.values()),
        *(body for kind, body in WHOLE_BODY_BADNESS.items() if kind != "1 MB string"),
    ]
    response = await _post(
        hostile, "/v1/import", b"\n".join(rows), **{"content-type": "application/x-ndjson"}
    )
    assert response.status_code < 500, response.text
    job = response.json()
    print(
        f"\n/v1/import: {response.status_code} "
        f"accepted={job.get('accepted')} rejected={job.get('rejected')}"
    )
    for error in job.get("errors", []):
        print(f"  row {error['row']}: {error['field']}: {error['reason'][:100]}")
    assert response.status_code == 200, job
    kinds = [*CALL_BADNESS, *(kind for kind in WHOLE_BODY_BADNESS if kind != "1 MB string")]
    refused_rows = {error["row"] for error in job["errors"]}
    missed = [kind for line, kind in enumerate(kinds, start=2) if line not in refused_rows]
    assert not missed, f"bad rows the import accepted: {missed}"
    assert job["accepted"] == 1, job
    assert job["rejected"] == len(rows) - 1, job
    assert all(error["reason"] for error in job["errors"]), job

    async def kept() -> bool:
        return await hostile.loop.profile_of(f"user_id:{good}") is not None

    await wait_for(kept, within=30, what="the import's good row on its profile")
    for body in (b"\xff\xfe\x00", b"{not json"):
        refused = await _post(hostile, "/v1/import", body, **{"content-type": "text/plain"})
        _refused_with_a_reason(refused, f"import as text/plain of {body!r}")
