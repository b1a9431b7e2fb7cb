"""Segment's tracking API: calls with a write key reach closeloop.ingest.v1; bad ones are named."""

from __future__ import annotations

import gzip
from typing import Any

import httpx
import orjson
import pytest

from libs.common.bus.reader import header
from libs.common.events import decode
from libs.devstack.stack import Stack
from tests.integration.ingest.support import ADMIN, CreatedSource, ingested, new_id

pytestmark = pytest.mark.integration

CALLS: dict[str, dict[str, Any]] = {
    "track": {"event": "order_completed", "properties": {"revenue": 129.9}},
    "identify": {"traits": {"email": "li.wei@example.com"}},
    "page": {"name": "Oolong Tea", "properties": {"path": "/p/oolong"}},
    "screen": {"name": "Cart"},
    "group": {"groupId": "org_3391", "traits": {"employees": 40}},
    "alias": {"previousId": "wx_oF3kD2aQ9"},
}


async def test_each_call_type_lands_on_the_ingest_topic_with_message_id_as_ce_id(
    client: httpx.AsyncClient, source: CreatedSource, stack: Stack
) -> None:
    sent: dict[str, str] = {}
    for kind, fields in CALLS.items():
        message_id = new_id(kind)
        call = {"userId": "u_48213", "messageId": message_id, **fields}
        response = await client.post(f"/v1/{kind}", json=call, auth=source.auth)
        assert (response.status_code, response.json()) == (200, {"success": True}), response.text
        sent[message_id] = kind

    records = await ingested(stack, sent)
    assert set(records) == set(sent)
    for message_id, record in records.items():
        assert record.key == b"u_48213"
        assert header(record, "ce_type") == f"ingest.{sent[message_id]}"
        assert header(record, "ce_source") == "closeloop/ingest"
        assert header(record, "content-type") == "application/json"
        event = decode(record.key, record.value, record.headers)
        assert event.data.source_id == source.id


async def test_write_key_may_come_in_the_body_and_anonymous_calls_are_keyed_by_anonymous_id(
    client: httpx.AsyncClient, source: CreatedSource, stack: Stack
) -> None:
    message_id = new_id()
    call = {
        "writeKey": source.write_key,
        "anonymousId": "anon-7",
        "messageId": message_id,
        "event": "viewed",
        "timestamp": "2025-03-14T09:00:00Z",
        "sentAt": "2025-03-14T09:00:01Z",
    }
    response = await client.post("/v1/track", json=call)
    assert response.status_code == 200, response.text

    record = (await ingested(stack, [message_id]))[message_id]
    assert record.key == b"anon-7"
    event = decode(record.key, record.value, record.headers)
    # Skew correction: sentAt says the client's clock is far behind, so the time moves forward.
    assert event.data.timestamp > event.data.received_at.replace(year=2025, month=3, day=14, hour=8)
    assert (event.data.received_at - event.data.timestamp).total_seconds() == pytest.approx(
        1, abs=1
    )


async def test_gzipped_batch_is_accepted(
    client: httpx.AsyncClient, source: CreatedSource, stack: Stack
) -> None:
    message_id = new_id()
    body = {"batch": [{"type": "identify", "userId": "u_gz", "messageId": message_id}]}
    response = await client.post(
        "/v1/batch",
        content=gzip.compress(orjson.dumps(body)),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        auth=source.auth,
    )
    assert response.status_code == 200, response.text
    assert message_id in await ingested(stack, [message_id])


async def test_gzipped_single_call_is_accepted(
    client: httpx.AsyncClient, source: CreatedSource, stack: Stack
) -> None:
    message_id = new_id()
    call = {"userId": "u_gz", "event": "viewed", "messageId": message_id}
    response = await client.post(
        "/v1/track",
        content=gzip.compress(orjson.dumps(call)),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"},
        auth=source.auth,
    )
    assert response.status_code == 200, response.text
    assert message_id in await ingested(stack, [message_id])


@pytest.mark.parametrize("path", ["/v1/identify", "/v1/batch"])
async def test_gzip_bomb_is_a_413_and_ingest_carries_on(
    client: httpx.AsyncClient, source: CreatedSource, path: str
) -> None:
    # 25 KB on the wire, within both limits, that would inflate to 25 MB.
    bomb = gzip.compress(b'{"batch": [' + b" " * (25 * 1024 * 1024))
    assert len(bomb) < 32 * 1024
    response = await client.post(
        path, content=bomb, headers={"Content-Encoding": "gzip"}, auth=source.auth
    )
    assert response.status_code == 413, response.text
    assert response.json()["error"]["code"] == "too_large"

    after = await client.post("/v1/track", json={"userId": "u", "event": "e"}, auth=source.auth)
    assert after.status_code == 200


async def test_batch_accepts_the_good_calls_and_names_the_rejected_one(
    client: httpx.AsyncClient, source: CreatedSource, stack: Stack
) -> None:
    good = [new_id(), new_id()]
    body = {
        "batch": [
            {"type": "track", "userId": "u1", "event": "a", "messageId": good[0]},
            {"type": "track", "userId": "u1", "messageId": new_id("bad")},
            {"type": "identify", "userId": "u1", "messageId": good[1]},
        ]
    }
    response = await client.post("/v1/batch", json=body, auth=source.auth)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["success"] is True and answer["accepted"] == 2
    assert [(r["index"], r["field"]) for r in answer["rejected"]] == [(1, "event")]
    assert set(await ingested(stack, good)) == set(good)


async def test_batch_where_every_call_is_bad_is_a_400_listing_them(
    client: httpx.AsyncClient, source: CreatedSource
) -> None:
    body = {"batch": [{"type": "track", "userId": "u1"}, {"type": "sleep", "userId": "u1"}]}
    response = await client.post("/v1/batch", json=body, auth=source.auth)
    assert response.status_code == 400
    answer = response.json()
    assert answer["error"]["field"] == "batch.0.event"
    assert [(r["index"], r["field"]) for r in answer["rejected"]] == [(0, "event"), (1, "type")]


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/track", {"userId": "u1"}, "event"),
        ("/v1/track", {"event": "e"}, "userId"),
        ("/v1/identify", {"userId": "u1", "timestamp": "last tuesday"}, "timestamp"),
        ("/v1/identify", {"userId": "u1", "traits": "vip"}, "traits"),
        ("/v1/alias", {"anonymousId": "a1", "previousId": "p"}, "userId"),
        ("/v1/batch", {"calls": []}, "batch"),
    ],
)
async def test_malformed_call_is_a_400_naming_the_field(
    client: httpx.AsyncClient, source: CreatedSource, path: str, body: Any, field: str
) -> None:
    response = await client.post(path, json=body, auth=source.auth)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["field"] == field and error["code"] and error["message"]


async def test_body_that_is_not_json_is_a_400(
    client: httpx.AsyncClient, source: CreatedSource
) -> None:
    response = await client.post("/v1/track", content=b"{nope", auth=source.auth)
    assert (response.status_code, response.json()["error"]["code"]) == (400, "invalid_json")


async def test_missing_unknown_and_disabled_write_keys_are_refused_with_401(
    client: httpx.AsyncClient, source: CreatedSource
) -> None:
    call = {"userId": "u1", "event": "e"}
    missing = await client.post("/v1/track", json=call)
    unknown = await client.post("/v1/track", json=call, auth=("clwk_not-a-key", ""))
    assert (missing.status_code, unknown.status_code) == (401, 401)
    assert missing.headers["www-authenticate"].startswith("Basic")

    disabled = await client.post(f"/sources/{source.id}/disable", headers=ADMIN)
    assert disabled.json()["enabled"] is False
    refused = await client.post("/v1/track", json=call, auth=source.auth)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"


async def test_deleted_source_key_is_refused(
    client: httpx.AsyncClient, source: CreatedSource
) -> None:
    call = {"userId": "u1", "event": "e"}
    assert (await client.post("/v1/track", json=call, auth=source.auth)).status_code == 200
    assert (await client.delete(f"/sources/{source.id}", headers=ADMIN)).status_code == 204
    assert (await client.post("/v1/track", json=call, auth=source.auth)).status_code == 401


async def test_call_over_32_kb_and_batch_over_500_kb_are_refused_with_413(
    client: httpx.AsyncClient, source: CreatedSource
) -> None:
    big_call = {"userId": "u1", "event": "e", "properties": {"blob": "x" * 33_000}}
    big_batch = {
        "batch": [{"type": "identify", "userId": "u1", "traits": {"b": "x" * 30_000}}] * 18
    }
    for path, body in (("/v1/track", big_call), ("/v1/batch", big_batch)):
        response = await client.post(path, json=body, auth=source.auth)
        assert response.status_code == 413, path
        assert "larger than the limit" in response.json()["error"]["message"]


async def test_oversized_call_inside_a_batch_is_rejected_alone(
    client: httpx.AsyncClient, source: CreatedSource
) -> None:
    batch = [
        {"type": "track", "userId": "u1", "event": "e", "properties": {"blob": "x" * 33_000}},
        {"type": "track", "userId": "u1", "event": "e"},
    ]
    response = await client.post("/v1/batch", json={"batch": batch}, auth=source.auth)
    assert response.status_code == 200
    assert response.json()["accepted"] == 1
    assert response.json()["rejected"][0]["index"] == 0


async def test_sources_are_listed_by_prefix_never_by_key(
    client: httpx.AsyncClient, source: CreatedSource
) -> None:
    listed = (await client.get("/sources", headers=ADMIN)).json()
    mine = next(item for item in listed if item["id"] == source.id)
    assert source.write_key.startswith(mine["key_prefix"])
    assert source.write_key not in str(listed)


async def test_sources_api_needs_the_admin_token(client: httpx.AsyncClient) -> None:
    assert (await client.get("/sources")).status_code == 401
    assert (await client.post("/sources", json={"name": "x"})).status_code == 401
