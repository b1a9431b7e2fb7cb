"""Ingest's REST request and response models."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from libs.common.errors import ErrorBody
from libs.common.storable import StorableText
from services.ingest.calls import Rejection
from services.ingest.imports import ImportJob
from services.ingest.sources import Source
from services.ingest.wechat import AES_KEY_PATTERN, TOKEN_PATTERN, WechatAccount


class SourceCreate(BaseModel):
    name: StorableText = Field(
        min_length=1, max_length=200, description="What sends events, e.g. `web`."
    )


class SourceView(BaseModel):
    id: str
    name: str
    key_prefix: str = Field(description="The start of the write key, to tell keys apart.")
    enabled: bool
    created_at: datetime

    @classmethod
    def of(cls, source: Source) -> SourceView:
        return cls(
            id=source.id,
            name=source.name,
            key_prefix=source.key_prefix,
            enabled=source.enabled,
            created_at=source.created_at,
        )


class SourceCreated(SourceView):
    write_key: str = Field(description="Shown only now: ingest keeps a hash of it, not the key.")


class CallAccepted(BaseModel):
    """What Segment's API answers, so SDKs treat the call as delivered."""

    success: Literal[True] = True


class RejectedCall(BaseModel):
    index: int = Field(description="The call's position in the batch, from 0.")
    field: str | None = Field(description="The Segment field at fault; null: the whole call.")
    reason: str

    @classmethod
    def of(cls, rejection: Rejection) -> RejectedCall:
        return cls(index=rejection.index, field=rejection.field, reason=rejection.reason)


class BatchAccepted(CallAccepted):
    accepted: int = Field(description="Calls published to Kafka and acknowledged by it.")
    rejected: list[RejectedCall] = Field(description="Calls not accepted, and why.")


class BatchRejected(ErrorBody):
    """A 400 for a batch: the error, and when every call of a well-formed batch was refused,
    why each was."""

    rejected: list[RejectedCall] = Field(
        default_factory=list, description="Absent when the batch itself is not one."
    )


class ImportRowError(BaseModel):
    row: int = Field(description="The line the row starts on, counting from 1.")
    field: str | None
    reason: str


class ImportJobView(BaseModel):
    id: str
    status: Literal["running", "completed", "failed"]
    format: Literal["ndjson", "csv"]
    accepted: int
    rejected: int
    errors: list[ImportRowError] = Field(description="The first rows rejected.")
    created_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, job: ImportJob) -> ImportJobView:
        return cls.model_validate(
            {
                "id": job.id,
                "status": job.status,
                "format": job.format,
                "accepted": job.accepted,
                "rejected": job.rejected,
                "errors": job.errors,
                "created_at": job.created_at,
                "finished_at": job.finished_at,
            }
        )


class WechatAccountRequest(BaseModel):
    """An official account's callback settings, as its WeChat console shows them."""

    source_id: str = Field(
        pattern=r"^[A-Za-z0-9_-]{1,64}$", description="The source its calls carry (`src_…`)."
    )
    token: str = Field(
        pattern=TOKEN_PATTERN,
        description="The Token set in the account's server configuration (3 to 32 letters and "
        "digits): checks every callback's signature.",
    )
    encoding_aes_key: str | None = Field(
        default=None,
        pattern=AES_KEY_PATTERN,
        description="The EncodingAESKey (43 letters and digits), for the encrypted mode; "
        "without it, only plaintext callbacks are accepted.",
    )


class WechatAccountView(BaseModel):
    app_id: str
    source_id: str
    encrypted: bool = Field(description="Whether an EncodingAESKey is set (never shown).")
    callback_path: str = Field(description="The URL path to give WeChat, under ingest's URL.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, account: WechatAccount) -> WechatAccountView:
        return cls(
            app_id=account.app_id,
            source_id=account.source_id,
            encrypted=account.encoding_aes_key is not None,
            callback_path=f"/wechat/{account.app_id}/callback",
            created_at=account.created_at,
            updated_at=account.updated_at,
        )
