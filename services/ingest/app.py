"""The ingest app: the tracking, import and sources routes over a database and a producer."""

from __future__ import annotations

from fastapi import FastAPI

from libs.common.api import Database, StoreTransactions
from libs.common.app import create_app
from libs.common.bus import EventProducer
from libs.common.db import create_engine
from libs.common.lifecycle import broker_check, database_check
from libs.common.retention import Retention
from libs.common.service import DatabaseEngine
from libs.common.settings import Settings
from services.ingest import api, browser, import_api, segment_api, wechat_api
from services.ingest.gateway import WRITE_KEY_SCHEME, Ingest
from services.ingest.settings import IngestSettings
from services.ingest.sources import WriteKeyCache
from services.ingest.store import IngestStore, wechat_nonces_retained


def create(settings: Settings) -> FastAPI:
    """Ingest consumes nothing and writes no outbox: its parts are the engine, the producer and
    the retention of WeChat callbacks' nonces."""
    assert isinstance(settings, IngestSettings)
    engine = create_engine(settings)
    producer = EventProducer(settings)
    database = Database.of(engine, settings.schema_name)
    ingest = Ingest(
        settings=settings,
        stores=StoreTransactions(database, IngestStore),
        producer=producer,
        write_keys=WriteKeyCache(settings.ingest_write_key_cache_seconds),
    )
    # Kept twice the replay window: a replay is refused by its nonce until its timestamp alone
    # refuses it.
    nonces = wechat_nonces_retained(
        settings.schema_name, 2 * settings.ingest_wechat_replay_window_seconds
    )
    retention = Retention(
        engine,
        settings.schema_name,
        [nonces],
        every_seconds=settings.retention_interval_s,
        batch_rows=settings.retention_batch_rows,
    )
    app = create_app(
        settings,
        title="Closeloop ingest",
        description="Segment-compatible tracking API, bulk imports, sources' write keys, and "
        "WeChat official accounts' callbacks.",
        routers=[
            segment_api.router,
            browser.router,
            import_api.router,
            api.router,
            wechat_api.accounts,
            wechat_api.callbacks,
        ],
        workers=[DatabaseEngine(engine), producer, retention],
        readiness_checks=[database_check(engine), broker_check(settings.kafka_bootstrap)],
        state={"database": database, "ingest": ingest},
        security_schemes=WRITE_KEY_SCHEME,
    )
    # Outermost, so that browsers may also read the errors the inner middleware answers.
    app.add_middleware(browser.TrackingCors, origins=settings.ingest_cors_origins)
    return app
