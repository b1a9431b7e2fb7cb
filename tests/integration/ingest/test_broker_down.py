"""When Kafka does not acknowledge, ingest answers 503 so clients keep the calls and retry."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
import pytest

from libs.common.db import upgrade
from libs.devstack.broker import EmbeddedBroker
from libs.devstack.pytest_plugin import SettingsFactory
from services.ingest.app import create
from services.ingest.settings import IngestSettings
from tests.integration.ingest.support import ADMIN

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[3] / "services" / "ingest" / "migrations"


async def test_call_is_answered_503_with_a_reason_when_the_broker_is_down(
    settings_factory: SettingsFactory, tmp_path: Path
) -> None:
    # A broker of this test's own, so stopping it leaves the session's broker alone.
    async with EmbeddedBroker(tmp_path) as broker:
        settings = settings_factory(
            f"ingest_{uuid.uuid4().hex[:8]}",
            settings_class=IngestSettings,
            kafka_bootstrap=broker.bootstrap,
            ingest_publish_timeout_seconds=2.0,
        )
        await asyncio.to_thread(upgrade, settings, MIGRATIONS)
        app = create(settings)
        transport = httpx.ASGITransport(app=app)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://ingest") as client,
        ):
            created = (await client.post("/sources", json={"name": "t"}, headers=ADMIN)).json()
            auth = (created["write_key"], "")
            call = {"userId": "u1", "event": "e"}
            assert (await client.post("/v1/track", json=call, auth=auth)).status_code == 200

            await broker.stop()
            response = await client.post("/v1/track", json=call, auth=auth)

    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["error"]["code"] == "broker_unavailable"
