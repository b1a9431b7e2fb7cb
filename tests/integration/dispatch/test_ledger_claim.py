"""The sender's claim of due rows: it reads `sends_due` in order, through an index scan, and
leaves the rest of its transaction planned as usual."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from sqlalchemy import text

import services.dispatch
from libs.common.db import Sessions
from libs.devstack.pytest_plugin import SettingsFactory
from services.dispatch.store import DispatchStore
from tests.integration.support import migrated_service_schema

pytestmark = pytest.mark.integration

_MIGRATIONS = Path(services.dispatch.__file__).parent / "migrations"


@pytest_asyncio.fixture(loop_scope="session")
async def ledger(settings_factory: SettingsFactory) -> AsyncIterator[tuple[Sessions, str]]:
    async with migrated_service_schema(settings_factory, "dispatch_claim", _MIGRATIONS) as ledger:
        yield ledger


def _send(number: int) -> dict[str, Any]:
    return {
        "message_id": f"msg_{number}",
        "idempotency_key": f"key_{number}",
        "event_id": f"evt_{number}",
        "request_id": f"req_{number}",
        "profile_id": f"prf_{number}",
        "channel": "webhook",
        "template_id": "tpl",
        "template_version": 1,
        "variant_id": None,
        "journey": {},
        "subject": None,
        "body": "hello",
        "payload": {},
        "recipient": None,
        "behavior_at": None,
    }


async def _claim_watching_the_planner(
    sessions: Sessions, schema: str
) -> tuple[list[str], str, str]:
    """Claim in one transaction; the ids claimed and the planner's bitmap-scan setting
    before and after."""
    async with sessions() as session, session.begin():
        show = text("SHOW enable_bitmapscan")
        before = (await session.execute(show)).scalar_one()
        claimed = await DispatchStore(session, schema).claim_due(10, [])
        after = (await session.execute(show)).scalar_one()
    return [row.message_id for row in claimed], before, after


async def test_a_claim_takes_due_rows_in_order_and_restores_the_planner(
    ledger: tuple[Sessions, str],
) -> None:
    sessions, schema = ledger
    async with sessions() as session, session.begin():
        store = DispatchStore(session, schema)
        await store.insert_sends([_send(number) for number in range(3)])
        # Row 0 is due last; the claim follows due_at, not insertion order.
        await session.execute(
            text(
                f"UPDATE {schema}.sends SET due_at = now() - interval '1 minute' "
                "WHERE message_id <> 'msg_0'"
            )
        )
        await session.execute(
            text(
                f"UPDATE {schema}.sends SET due_at = due_at - interval '2 minutes' "
                "WHERE message_id = 'msg_2'"
            )
        )
    claimed, before, after = await _claim_watching_the_planner(sessions, schema)
    assert claimed == ["msg_2", "msg_1", "msg_0"]
    assert before == after == "on"
