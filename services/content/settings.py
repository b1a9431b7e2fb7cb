"""Settings of the content service: rendering limits, the render sandbox, the variant bandit and
the copy generator."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator

from libs.common.settings import Settings


class ContentSettings(Settings):
    service_name: str = "content"
    http_port: int = 8105

    content_loop_iteration_limit: int = Field(
        default=10_000, ge=1, description="Loop iterations one render may run (nested: product)."
    )
    content_output_limit_bytes: int = Field(
        default=200_000, ge=1, description="Bytes one rendered field may have."
    )
    content_namespace_limit_bytes: int = Field(
        default=500_000, ge=1, description="Bytes a template's own variables (assign) may hold."
    )
    content_context_depth_limit: int = Field(
        default=30, ge=1, description="How deeply render contexts may nest."
    )
    content_render_timeout_ms: int = Field(
        default=1000, ge=10, description="Wall time one message's render may take."
    )
    content_render_workers: int = Field(
        default=2, ge=1, le=32, description="Sandbox processes that render templates."
    )
    content_render_memory_limit_mb: int = Field(
        default=1024, ge=128, description="Address space a sandbox process may use."
    )
    content_evidence_half_life_days: float = Field(
        default=30.0,
        gt=0,
        description="The variant bandit's evidence loses half its weight in this many days.",
    )
    content_model_cache_seconds: float = Field(
        default=60.0,
        ge=0,
        description="How long a template's fitted bandit model chooses variants before it is "
        "fitted again on the evidence counted since.",
    )
    content_evaluation_interval_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="How often each template with variants is evaluated (Scott's value "
        "remaining), to promote its leaders or lift their promotion.",
    )
    content_llm_base_url: str = Field(
        default="", description="An OpenAI-compatible API (`POST {base}/v1/chat/completions`)."
    )
    content_llm_model: str = Field(default="gpt-4o-mini", description="The model to ask.")
    content_llm_api_key: SecretStr = Field(default=SecretStr(""), description="Its bearer key.")
    content_llm_timeout_ms: int = Field(default=20_000, ge=100)
    content_dispatch_url: str = Field(
        default="http://127.0.0.1:8106",
        description="The dispatch service, asked whether the subscription topic a template "
        "names exists; empty skips the check.",
    )
    content_topic_check_timeout_ms: int = Field(
        default=3000, ge=1, description="How long a topic check may take before a 503."
    )
    content_decision_retention_days: float = Field(
        default=400,
        gt=0,
        description="How long the decision taken for a request, and which messages already "
        "counted as a trial, click or conversion, are kept; then they are deleted. Longer than "
        "the topics' retention (a redelivered request or outcome must still find them; refused "
        "otherwise). A click on a message older than this no longer teaches the bandit.",
    )

    @model_validator(mode="after")
    def _decisions_outlive_topics(self) -> Self:
        if self.content_decision_retention_days * 24 <= self.topic_retention_hours:
            raise ValueError(
                "CLOSELOOP_CONTENT_DECISION_RETENTION_DAYS must be longer than "
                "CLOSELOOP_TOPIC_RETENTION_HOURS: a redelivered request must still find its "
                "decision"
            )
        return self
