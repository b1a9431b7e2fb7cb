"""Each channel kind's configuration: what the API accepts, which fields are secrets."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

Kind = Literal[
    "email", "webhook", "sms", "push", "wecom", "wecom_contact", "wechat", "wechat_miniprogram"
]
_Text = Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^[^\x00]*$")]
_Url = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://[^\s\x00]+$")]
# A mailto: address, with none of the characters a mailto: URI would need to escape.
_Mailbox = Annotated[
    str, StringConstraints(max_length=320, pattern=r"^[^@\s<>?&%\x00]+@[^@\s<>?&%\x00]+$")
]


class EmailConfig(BaseModel):
    """SMTP: host, port, TLS (`none`, `starttls`, `implicit`), credentials, the From address."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: _Text
    port: int = Field(default=587, ge=1, le=65535)
    tls: Literal["none", "starttls", "implicit"] = "starttls"
    username: _Text | None = None
    password: _Text | None = None
    from_address: Annotated[
        str, StringConstraints(max_length=320, pattern=r"^[^@\s<>\x00]+@[^@\s<>\x00]+$")
    ]
    # Where mail clients may send an unsubscribe request (RFC 2369 `mailto:`); whoever reads
    # that mailbox acts on it. Without it, List-Unsubscribe names only the one-click URL.
    unsubscribe_mailto: _Mailbox | None = None


class WebhookConfig(BaseModel):
    """A signed POST to `url`; `secret` keys the HMAC-SHA256 signature."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: _Url
    secret: _Text


class SmsConfig(BaseModel):
    """Twilio's Messages API (or any provider speaking it at `base_url`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: _Url = "https://api.twilio.com"
    account_sid: _Text
    auth_token: _Text
    from_number: _Text
    status_callback: _Url | None = None


class PushConfig(BaseModel):
    """FCM HTTP v1: the project, and an OAuth 2 access token for it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: _Url = "https://fcm.googleapis.com"
    project_id: _Text
    access_token: _Text


class WecomConfig(BaseModel):
    """WeCom (企业微信) application messages."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: _Url = "https://qyapi.weixin.qq.com"
    corp_id: _Text
    corp_secret: _Text
    agent_id: int = Field(ge=0, le=2**31 - 1)


class WecomContactConfig(BaseModel):
    """WeCom customer-contact messages (`externalcontact/add_msg_template`): the corp, the
    secret of its customer-contact app, and the member who sends (WeCom picks when absent)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: _Url = "https://qyapi.weixin.qq.com"
    corp_id: _Text
    corp_secret: _Text
    sender: _Text | None = None


class WechatConfig(BaseModel):
    """WeChat official-account template messages; `template_id` unless the payload names one."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: _Url = "https://api.weixin.qq.com"
    app_id: _Text
    app_secret: _Text
    template_id: _Text | None = None


class WechatMiniProgramConfig(BaseModel):
    """Mini-program subscribe messages; `template_id` and `page` unless the message names them;
    `miniprogram_state` the version a tap opens (`formal`, `trial` or `developer`)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    base_url: _Url = "https://api.weixin.qq.com"
    app_id: _Text
    app_secret: _Text
    template_id: _Text | None = None
    page: _Text | None = None
    miniprogram_state: Literal["formal", "trial", "developer"] = "formal"
    lang: Literal["zh_CN", "en_US", "zh_HK", "zh_TW"] = "zh_CN"


CONFIGS: dict[str, type[BaseModel]] = {
    "email": EmailConfig,
    "webhook": WebhookConfig,
    "sms": SmsConfig,
    "push": PushConfig,
    "wecom": WecomConfig,
    "wecom_contact": WecomContactConfig,
    "wechat": WechatConfig,
    "wechat_miniprogram": WechatMiniProgramConfig,
}
SECRET_FIELDS: dict[str, frozenset[str]] = {
    "email": frozenset({"password"}),
    "webhook": frozenset({"secret"}),
    "sms": frozenset({"auth_token"}),
    "push": frozenset({"access_token"}),
    "wecom": frozenset({"corp_secret"}),
    "wecom_contact": frozenset({"corp_secret"}),
    "wechat": frozenset({"app_secret"}),
    "wechat_miniprogram": frozenset({"app_secret"}),
}


class InvalidConfig(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


def parse_config(kind: str, values: dict[str, Any]) -> BaseModel:
    """The kind's config model from `values`; InvalidConfig names the first wrong field."""
    try:
        return CONFIGS[kind].model_validate(values)
    except ValidationError as error:
        first = error.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        field = f"config.{where}" if where else "config"
        raise InvalidConfig(field, first["msg"]) from None


def split_secrets(kind: str, config: BaseModel) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings that may be shown, secrets that never are)."""
    values = config.model_dump(mode="json", exclude_none=True)
    secret = SECRET_FIELDS[kind]
    return (
        {k: v for k, v in values.items() if k not in secret},
        {k: v for k, v in values.items() if k in secret},
    )
