"""Settings of the console: where the services it manages listen, and how long a session lasts."""

from __future__ import annotations

from pydantic import Field, SecretStr

from libs.common.settings import Settings


class ConsoleSettings(Settings):
    service_name: str = "console"
    http_port: int = 8108

    console_segment_url: str = Field(
        default="http://127.0.0.1:8103",
        description="The segment service's base URL; the console calls its management API "
        "with the admin token, which never reaches the browser.",
    )
    console_journey_url: str = Field(
        default="http://127.0.0.1:8104", description="The journey service's base URL."
    )
    console_content_url: str = Field(
        default="http://127.0.0.1:8105", description="The content service's base URL."
    )
    console_profile_url: str = Field(
        default="http://127.0.0.1:8102",
        description="The profile service's base URL (people searched, shown and previewed for).",
    )
    console_attribution_url: str = Field(
        default="http://127.0.0.1:8107", description="The attribution service's base URL."
    )
    console_dispatch_url: str = Field(
        default="http://127.0.0.1:8106", description="The dispatch service's base URL."
    )
    console_oidc_issuer: str = Field(
        default="",
        description="The company's OpenID Connect provider (its issuer URL, without "
        "`/.well-known/openid-configuration`); empty: no single sign-on, passwords only.",
    )
    console_oidc_client_id: str = Field(default="", description="The console's client id there.")
    console_oidc_client_secret: SecretStr = Field(
        default=SecretStr(""), description="The console's client secret there."
    )
    console_oidc_redirect_url: str = Field(
        default="",
        description="The callback URL registered with the provider, e.g. "
        "`https://console.example.com/sign-in/oidc/callback`; empty: the one the request "
        "arrived at.",
    )
    console_oidc_creates_analysts: bool = Field(
        default=False,
        description="Let a person the provider vouches for, whose email no console user has, "
        "in as a new analyst; otherwise they are refused.",
    )
    console_upstream_timeout_seconds: float = Field(
        default=30.0, gt=0, description="How long a call to a managed service may take."
    )
    console_session_hours: float = Field(
        default=12.0, gt=0, description="How long a sign-in lasts before the next is needed."
    )
    console_secure_cookies: bool = Field(
        default=True,
        description="Mark the session cookies `Secure` (sent over HTTPS only; browsers also "
        "send them to http://localhost). Turn off only to reach a development console over "
        "plain HTTP on another host name.",
    )
