"""Bulk import: NDJSON and CSV rows are counted, published, and their job can be read back."""

from __future__ import annotations

import httpx
import orjson
import pytest

from libs.devstack.stack import Stack
from tests.integration.ingest.support import CreatedSource, imported, new_id

pytestmark = pytest.mark.integration


async def test_ndjson_import_publishes_good_rows_and_reports_bad_ones(
    client: httpx.AsyncClient, source: CreatedSource, stack: Stack
) -> None:
    good = [new_id("imp") for _ in range(3)]
    lines = [
        {"type": "identify", "userId": "u1", "messageId": good[0], "traits": {"tier": "gold"}},
        {"userId": "u2", "event": "order_completed", "messageId": good[1]},
        {"type": "track", "userId": "u3"},
        {"userId": "u4", "messageId": good[2], "timestamp": "2024-12-01T00:00:00Z"},
    ]
    body = b"\n".join(orjson.dumps(line) for line in lines) + b"\nnot json\n"

    response = await client.post(
        "/v1/import",
        content=body,
        headers={"Content-Type": "application/x-ndjson"},
        auth=source.auth,
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert (job["status"], job["accepted"], job["rejected"]) == ("completed", 3, 2)
    assert [(error["row"], error["field"]) for error in job["errors"]] == [(3, "event"), (5, None)]

    calls = await imported(stack, good)
    assert set(calls) == set(good)
    assert calls[good[2]].data.timestamp.year == 2024

    read_back = await client.get(f"/v1/import/{job['id']}", auth=source.auth)
    assert read_back.json() == job


async def test_csv_import_maps_columns_onto_calls(
    client: httpx.AsyncClient, source: CreatedSource, stack: Stack
) -> None:
    ids = [new_id("csv"), new_id("csv")]
    csv = (
        "type,userId,event,timestamp,messageId,properties.revenue:number,traits.city\r\n"
        f"track,u1,order_completed,2025-03-01T10:00:00Z,{ids[0]},129.9,\r\n"
        f"identify,u1,,,{ids[1]},,Hangzhou\r\n"
        "track,u2,order_completed,,,not-a-number,\r\n"
    )
    response = await client.post(
        "/v1/import",
        content=csv.encode(),
        headers={"Content-Type": "text/csv; charset=utf-8"},
        auth=source.auth,
    )
    assert response.status_code == 200, response.text
    job = response.json()
    assert (job["accepted"], job["rejected"]) == (2, 1)
    assert job["errors"] == [
        {
            "row": 4,
            "field": "properties.revenue:number",
            "reason": "properties.revenue:number must be a finite number",
        }
    ]
    calls = await imported(stack, ids)
    assert calls[ids[0]].data.properties == {"revenue": 129.9}
    assert calls[ids[1]].data.traits == {"city": "Hangzhou"}


async def test_large_import_is_published_in_chunks(
    client: httpx.AsyncClient, source: CreatedSource, stack: Stack
) -> None:
    ids = [new_id("bulk") for _ in range(1_200)]
    body = b"".join(
        orjson.dumps({"userId": f"u{index % 50}", "traits": {"n": index}, "messageId": mid}) + b"\n"
        for index, mid in enumerate(ids)
    )
    response = await client.post(
        "/v1/import",
        content=body,
        headers={"Content-Type": "application/x-ndjson"},
        auth=source.auth,
    )
    assert response.json()["accepted"] == len(ids)
    assert len(await imported(stack, ids)) == len(ids)


async def test_csv_with_an_unknown_column_is_a_400_naming_it(
    client: httpx.AsyncClient, source: CreatedSource
) -> None:
    response = await client.post(
        "/v1/import",
        content=b"userId,shoe_size\nu1,42\n",
        headers={"Content-Type": "text/csv"},
        auth=source.auth,
    )
    assert response.status_code == 400
    assert response.json()["error"]["field"] == "shoe_size"


async def test_import_of_another_format_is_a_415(
    client: httpx.AsyncClient, source: CreatedSource
) -> None:
    response = await client.post(
        "/v1/import", content=b"{}", headers={"Content-Type": "application/xml"}, auth=source.auth
    )
    assert response.status_code == 415


async def test_import_jobs_are_private_to_their_source(
    client: httpx.AsyncClient, source: CreatedSource
) -> None:
    response = await client.post(
        "/v1/import", content=b"", headers={"Content-Type": "text/csv"}, auth=source.auth
    )
    job_id = response.json()["id"]
    assert (await client.get(f"/v1/import/{job_id}", auth=source.auth)).status_code == 200
    assert (await client.get(f"/v1/import/{job_id}")).status_code == 401
    assert (await client.get("/v1/import/imp_missing", auth=source.auth)).status_code == 404
