"""Settings every Closeloop process reads from `CLOSELOOP_*` environment variables."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """The one settings base: each service extends it with what only it needs.

    A service subclass sets `service_name` and `http_port` defaults; everything else is shared so
    that one set of environment variables configures the whole platform.
    """

    model_config = SettingsConfigDict(env_prefix="CLOSELOOP_", extra="ignore")

    service_name: str = "closeloop"
    environment: str = Field(default="development", description="development, test or production")

    http_host: str = "127.0.0.1"
    http_port: int = 8100

    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_idempotence: bool = Field(
        default=True,
        description="Idempotent producer: on for Apache Kafka, off for the embedded broker.",
    )
    kafka_session_timeout_ms: int = Field(
        default=10_000,
        ge=6_000,
        description="How long a consumer that stopped heartbeating keeps its partitions.",
    )
    kafka_fetch_max_wait_ms: int = Field(
        default=100,
        ge=1,
        description="How long a fetch may wait at the broker for data. Apache Kafka answers as "
        "soon as there is any, so this only bounds idle polling; a broker that holds every "
        "fetch this long adds it to each hop of the loop.",
    )
    kafka_commit_interval_ms: int = Field(
        default=1_000,
        ge=0,
        description="How long a consumer may hold the offsets of handled batches before it "
        "commits them (at once when it has caught up, stops or loses partitions; 0 commits "
        "after every batch). A batch handled but not committed is redelivered after a crash "
        "and skipped by the inbox; fewer commits spare the broker a request per batch.",
    )
    kafka_commit_timeout_ms: int = Field(
        default=30_000,
        ge=100,
        description="How long an offset commit may take before the consumer gives its Kafka "
        "client up for a new one (aiokafka retries a commit for as long as the group "
        "coordinator looks retriable, which after a cut connection can be for good).",
    )
    kafka_poll_deadline_ms: int = Field(
        default=60_000,
        ge=1_000,
        description="How long one poll, or starting a Kafka client, may take before the "
        "consumer gives its client up for a new one. A poll waits for the group's assignment "
        "during a rebalance (at most the session timeout, as the broker waits for members), so "
        "the deadline is well beyond that: a poll still waiting then waits on a client that "
        "will not recover.",
    )
    topic_partitions: int = 12
    topic_replication_factor: int = 1

    database_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432/closeloop"
    database_pool_size: int = 10
    database_command_timeout_ms: int = Field(
        default=60_000,
        ge=100,
        description="How long a statement may wait for PostgreSQL's reply before it fails and "
        "its connection is closed: a database host that hung, or a network path that went "
        "silent without a reset, would otherwise hold the statement, and what waits on it, for "
        "ever. The caller's retry (the bus retries a batch) takes a new connection. Above any "
        "statement a service runs in steady use; segment's bulk evaluation has its own default.",
    )

    admin_token: SecretStr = SecretStr("")
    tracking_secret: SecretStr = Field(
        default=SecretStr(""),
        description="The key that signs click, open and unsubscribe links (content signs, "
        "dispatch verifies): the same value for both, kept secret.",
    )
    tracking_base_url: str = Field(
        default="http://127.0.0.1:8106",
        description="Where recipients reach dispatch's tracking endpoints (/c, /o, /u).",
    )

    batch_max_records: int = Field(default=500, ge=1)
    batch_max_wait_ms: int = Field(default=200, ge=1)
    handler_max_attempts: int = Field(default=3, ge=1)
    handler_retry_backoff_ms: int = Field(default=100, ge=1)
    dlq_max_failure_ratio: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="Above this share of failed events in a batch the dependency is down: "
        "retry instead of dead-lettering.",
    )
    dlq_max_consecutive_failures: int = Field(
        default=5,
        ge=1,
        description="This many events failing one after another (across batches) means the "
        "dependency is down: retry instead of dead-lettering.",
    )
    topic_retention_hours: float = Field(
        default=24 * 7,
        gt=0,
        description="How long the broker keeps events on the loop's topics (their retention.ms; "
        "7 days in deploy/k8s and by Kafka's default): how long a handled event can come back.",
    )
    inbox_retention_hours: float = Field(
        default=24 * 8,
        gt=0,
        description="How long handled event ids are kept: longer than topic_retention_hours "
        "(refused otherwise), so an event the broker can still redeliver is still skipped.",
    )
    retention_interval_s: float = Field(
        default=600,
        gt=0,
        description="How often each process deletes what has outlived its retention (the inbox "
        "and the service's own kinds: docs/operations.md, Retention).",
    )
    retention_batch_rows: int = Field(
        default=5_000,
        ge=1,
        description="Rows one retention transaction deletes at most: a backlog goes in many "
        "short transactions rather than one long one.",
    )
    outbox_batch_rows: int = Field(
        default=20,
        ge=1,
        description="Outbox rows (one per handled batch) the relay publishes at once.",
    )
    outbox_poll_interval_ms: int = Field(default=200, ge=1)

    log_level: str = "INFO"
    log_json: bool = True

    @model_validator(mode="after")
    def _inbox_outlives_topics(self) -> Self:
        if self.inbox_retention_hours <= self.topic_retention_hours:
            raise ValueError(
                f"inbox_retention_hours ({self.inbox_retention_hours:g}) must be longer than "
                f"topic_retention_hours ({self.topic_retention_hours:g}): an event the broker "
                "can still redeliver must still be in the inbox, or it is handled twice"
            )
        return self

    @property
    def schema_name(self) -> str:
        """The PostgreSQL schema this service owns."""
        return self.service_name.replace("-", "_")
