"""Erasure: a person who went all the way round the loop, deleted on profile, leaves no row
that names them in any table of any service's schema."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest

from libs.common import topics
from libs.common.bus.reader import header
from tests.integration.closed_loop.harness import now, unique
from tests.integration.closed_loop.test_the_loop_closes import PRODUCT_URL, _define_the_campaign
from tests.integration.hostile.conftest import SERVICES, Hostile
from tests.integration.support import read_topic, wait_for

pytestmark = pytest.mark.integration

# Traces that may stay after erasure, by (service, table, what was found), and why.
ACCEPTABLE_TRACES: dict[tuple[str, str, str], str] = {
    ("dispatch", "sends", "profile id"): (
        "the send ledger keeps each row's idempotency key (which embeds the profile id) and "
        "profile_id so a replayed delivery is never sent twice; recipient, subject, body and "
        "payload are scrubbed, and no table of any service links the id to a person any more"
    ),
}


async def test_an_erased_person_leaves_no_row_in_any_service(hostile: Hostile) -> None:
    loop = hostile.loop
    run = unique("erase")
    journey_id = await _define_the_campaign(loop, run)
    user_id, address = unique("user"), f"{unique('erase.me')}@example.com"

    # Round the loop: identify -> segment -> journey -> email -> click -> webhook -> purchase.
    await loop.track(
        "identify",
        userId=user_id,
        traits={"email": address, "first_name": "Erase Me", "loop_run": run},
        timestamp=now(),
    )
    mail = await loop.mail_to(address)
    html = next(
        str(part.get_payload(decode=True), "utf-8")  # type: ignore[arg-type]
        for part in mail.walk()
        if part.get_content_type() == "text/html"
    )
    link = re.findall(r'href="([^"]+/c/[^"]+)"', html)[0]
    click = await loop.dispatch.get(link, follow_redirects=False)
    assert click.status_code == 302 and click.headers["location"] == PRODUCT_URL
    profile = await loop.profile_of(f"user_id:{user_id}")
    assert profile is not None
    profile_id = profile["id"]
    await loop.track(
        "track",
        userId=user_id,
        event="order_completed",
        properties={"revenue": 88.0, "currency": "CNY", "order_id": unique("SO")},
        timestamp=now(),
    )

    async def credited() -> bool:
        engagement = (await loop.call("profile", "GET", f"/profiles/{profile_id}"))["engagement"]
        return bool(engagement["attributed_revenue"])

    await wait_for(credited, within=60, what="the purchase credited on the profile")
    stats = await loop.call("journey", "GET", f"/journeys/{journey_id}/stats")
    assert stats["nodes"]["call_hook"]["entered"] == 1, stats
    needles = {"profile id": profile_id, "email": address, "user id": user_id}
    before = await _traces(hostile, needles)
    assert {service for service, *_ in before} >= {
        "profile",
        "segment",
        "journey",
        "content",
        "dispatch",
        "attribution",
    }, before

    # Erase, and wait until every service that reads profile.v1 has handled the deletion.
    started = time.monotonic()
    erased = await loop.profile.delete(f"/profiles/{profile_id}")
    assert erased.status_code == 202, erased.text
    await _wait_until_every_service_erased(hostile, profile_id)
    await _wait_until_outboxes_are_published(hostile)
    print(f"\nprofile.deleted handled by every service in {time.monotonic() - started:.1f}s")

    gone = await loop.profile.get(f"/profiles/{profile_id}")
    assert gone.status_code == 404, gone.text
    assert await loop.profile_of(f"user_id:{user_id}") is None
    assert await loop.profile_of(f"email:{address}") is None

    after = await _traces(hostile, needles)
    print("rows still naming the person after erasure (service, table, columns, what, rows):")
    for trace in after:
        verdict = ACCEPTABLE_TRACES.get(
            trace[:2] + trace[3:4], "NOT ACCEPTABLE: personal data kept"
        )
        print(f"  {trace} -> {verdict}")
    kept = [trace for trace in after if (trace[0], trace[1], trace[3]) not in ACCEPTABLE_TRACES]
    assert not kept, "personal data kept after erasure (service, table, columns, what, rows):\n" + (
        "\n".join(str(trace) for trace in kept)
    )


async def _wait_until_every_service_erased(hostile: Hostile, profile_id: str) -> None:
    deletions = [
        header(record, "ce_id")
        for record in await read_topic(hostile.stack.kafka_bootstrap, topics.PROFILE)
        if header(record, "ce_type") == "profile.deleted"
        and (record.key or b"").decode() == profile_id
    ]
    assert len(deletions) == 1, deletions
    readers = hostile.consumers_of(topics.PROFILE)

    async def handled_everywhere() -> bool:
        for service in readers:
            found = await hostile.database.fetchval(
                f"SELECT count(*) FROM {hostile.schema(service)}.inbox "
                "WHERE consumer = $1 AND event_id = $2",
                hostile.group(service),
                deletions[0],
            )
            if not found:
                return False
        return True

    await wait_for(handled_everywhere, within=60, what=f"profile.deleted handled by {readers}")


async def _wait_until_outboxes_are_published(hostile: Hostile) -> None:
    async def empty() -> bool:
        for service in SERVICES:
            if await _has_table(hostile, service, "outbox") and await hostile.database.fetchval(
                f"SELECT count(*) FROM {hostile.schema(service)}.outbox"
            ):
                return False
        return True

    await wait_for(empty, within=30, what="every outbox published")


async def _has_table(hostile: Hostile, service: str, table: str) -> bool:
    return bool(
        await hostile.database.fetchval(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE table_schema = $1 AND table_name = $2",
            hostile.schema(service),
            table,
        )
    )


async def _traces(
    hostile: Hostile, needles: dict[str, str]
) -> list[tuple[str, str, str, str, int]]:
    """(service, table, columns, what, rows) for every table of every service's schema with a
    row holding a needle: text and json columns through the row's text, bytea by its bytes."""
    found: list[tuple[str, str, str, str, int]] = []
    for service in SERVICES:
        schema = hostile.schema(service)
        columns: dict[str, list[tuple[str, str]]] = {}
        for row in await hostile.database.fetch(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = $1 ORDER BY table_name, ordinal_position",
            schema,
        ):
            columns.setdefault(row["table_name"], []).append((row["column_name"], row["data_type"]))
        for table, table_columns in columns.items():
            for what, needle in needles.items():
                hits = await _columns_holding(hostile, schema, table, table_columns, needle)
                if hits:
                    found.append(
                        (
                            service,
                            table,
                            ",".join(hits),
                            what,
                            await _rows_holding(hostile, schema, table, table_columns, needle),
                        )
                    )
    return found


def _condition(name: str, data_type: str) -> str:
    quoted = '"' + name.replace('"', '""') + '"'
    if data_type == "bytea":
        return f"position(convert_to($1, 'UTF8') in {quoted}) > 0"
    return f"CAST({quoted} AS text) LIKE '%' || $1 || '%'"


async def _columns_holding(
    hostile: Hostile, schema: str, table: str, columns: list[tuple[str, str]], needle: str
) -> list[str]:
    hits = []
    for name, data_type in columns:
        count = await hostile.database.fetchval(
            f'SELECT count(*) FROM {schema}."{table}" WHERE {_condition(name, data_type)}', needle
        )
        if count:
            hits.append(name)
    return hits


async def _rows_holding(
    hostile: Hostile, schema: str, table: str, columns: list[tuple[str, str]], needle: str
) -> int:
    where = " OR ".join(_condition(name, data_type) for name, data_type in columns)
    count: Any = await hostile.database.fetchval(
        f'SELECT count(*) FROM {schema}."{table}" WHERE {where}', needle
    )
    return int(count)
