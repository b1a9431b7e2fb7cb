"""Settings of the ingest service."""

from __future__ import annotations

from pydantic import Field, HttpUrl

from libs.common.settings import Settings


class IngestSettings(Settings):
    service_name: str = "ingest"
    http_port: int = 8101

    ingest_max_event_bytes: int = Field(
        default=32 * 1024,
        ge=1,
        description="The largest call (a batch's: the event it becomes), or import row, accepted.",
    )
    ingest_max_batch_bytes: int = Field(
        default=500 * 1024, ge=1, description="The largest `/v1/batch` body accepted."
    )
    ingest_import_chunk_events: int = Field(
        default=500, ge=1, description="Import rows published to Kafka together."
    )
    ingest_import_chunk_rows: int = Field(
        default=500,
        ge=1,
        description="Identify rows of an import that travel as one `ingest.identify_chunk` "
        "event (rows whose keys go to one partition).",
    )
    ingest_import_chunk_bytes: int = Field(
        default=256 * 1024,
        ge=1,
        description="The most bytes of rows one `ingest.identify_chunk` holds (a row larger "
        "travels alone in its chunk): below the broker's largest message.",
    )
    ingest_import_error_samples: int = Field(
        default=20, ge=0, description="Rejected import rows an import job describes."
    )
    ingest_publish_timeout_seconds: float = Field(
        default=10.0,
        gt=0,
        description="How long a request waits for Kafka's acknowledgement before it answers 503.",
    )
    ingest_write_key_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a write key's lookup is remembered, so a call rarely hits "
        "PostgreSQL; a disabled key keeps working on other replicas for up to this long.",
    )
    ingest_cors_origins: list[str] = Field(
        default=[],
        description="Origins whose pages may call the tracking API from a browser (CORS), as a "
        'JSON list: `["https://shop.example.com"]`, or `["*"]` for any. None by default: a '
        "platform lists the sites that run its tracking.",
    )
    ingest_public_url: HttpUrl | None = Field(
        default=None,
        description="The URL browsers reach ingest at (`https://ingest.example.com`), which the "
        "SDK settings document gives analytics-next; by default the request's own scheme and "
        "host, which is wrong behind a proxy that terminates TLS.",
    )
    ingest_wechat_replay_window_seconds: float = Field(
        default=300,
        gt=0,
        description="A WeChat callback whose timestamp is further than this from now is "
        "refused (401), and one whose (timestamp, nonce) was seen within it is a replay, "
        "refused too.",
    )
