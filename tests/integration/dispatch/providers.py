"""Local stand-ins for the outside world, speaking each provider's real API shape.

One HTTP server (uvicorn + starlette, in the test's event loop) plays the webhook receiver,
Twilio, FCM, WeCom (application and customer-contact messages) and WeChat (official-account
template messages, mini-program subscribe messages), with their errcodes; an aiosmtpd server
plays the mail server. Every message the webhook receiver, Twilio and the mail server accept is
also counted raw, as a `Delivery`: none of them deduplicates there, as SMTP servers and most SMS
gateways do not. A test can put any of the three in a `Storm` (server errors and throttling) per
channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any, Literal
from urllib.parse import parse_qsl

import uvicorn
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.integration.support import wait_for


@dataclass(frozen=True)
class Delivery:
    """One message a provider accepted, raw: `key` is the webhook's or the SMS's Idempotency-Key,
    an email's Message-ID; `at` is when it arrived (monotonic)."""

    channel: Literal["webhook", "sms", "email"]
    key: str
    at: float


@dataclass
class Storm:
    """A provider having a bad time: of every `every` requests, one answers a server error and
    one is throttled (HTTP 429 with `Retry-After: retry_after_s`; SMTP 450, which names no
    delay). Deterministic, so a run's counts do not depend on luck. A key that comes back
    before its Retry-After has passed is noted in `early`."""

    every: int = 20
    retry_after_s: int = 1
    answered: int = 0
    errors: int = 0
    throttled: int = 0
    not_before: dict[str, float] = field(default_factory=dict)
    early: list[str] = field(default_factory=list)

    def answer(self, key: str, *, says_when: bool = True) -> Literal["ok", "error", "throttle"]:
        """How to answer this request; `says_when` is False where a throttle cannot name its
        delay (SMTP), so a retry cannot come back early."""
        now = time.monotonic()
        due = self.not_before.pop(key, None)
        if due is not None and now < due:
            self.early.append(key)
        self.answered += 1
        slot = self.answered % self.every
        if slot == 1:
            self.errors += 1
            return "error"
        if slot == self.every // 2 + 1:
            self.throttled += 1
            if says_when:
                self.not_before[key] = now + self.retry_after_s
            return "throttle"
        return "ok"


_THROTTLED = {"error": "too many requests", "code": 20429}
# An OpenID as WeChat hands them out: 28 characters starting with `o`; shorter ones pass here.
_OPENID = re.compile(r"^o[A-Za-z0-9_-]{5,40}$")


def _empty_subscribe_value(data: object) -> str | None:
    """The key of a subscribe message's data whose `value` is missing or empty ("" when the
    data itself is not a non-empty object), or None when every key has one."""
    if not isinstance(data, dict) or not data:
        return ""
    for key, entry in data.items():
        if not isinstance(entry, dict) or not str(entry.get("value", "")).strip():
            return str(key)
    return None


@dataclass
class WebhookInbox:
    """What one webhook endpoint received: every raw request, and each idempotency key once."""

    raw: list[dict[str, Any]] = field(default_factory=list)
    by_key: dict[str, dict[str, Any]] = field(default_factory=dict)
    keys: Counter[str] = field(default_factory=Counter)
    status: int = 200


@dataclass
class Providers:
    webhooks: dict[str, WebhookInbox] = field(default_factory=dict)
    sms: list[dict[str, Any]] = field(default_factory=list)
    push: list[dict[str, Any]] = field(default_factory=list)
    wecom: list[dict[str, Any]] = field(default_factory=list)
    wecom_contact: list[dict[str, Any]] = field(default_factory=list)
    # Customers who are no one's contact: named in add_msg_template's fail_list.
    wecom_strangers: set[str] = field(default_factory=set)
    wechat: list[dict[str, Any]] = field(default_factory=list)
    subscribe: list[dict[str, Any]] = field(default_factory=list)
    # Tokens fetched per WeChat app id; only an app's last token is valid, as a new one
    # retires the one before (WeChat's overlap of a few minutes left out: stricter).
    wechat_tokens: Counter[str] = field(default_factory=Counter)
    wechat_current: dict[str, str] = field(default_factory=dict)
    wechat_expire_next: bool = False
    # Openids that refused: 43004 (not following) to template, 43101 to subscribe messages.
    wechat_refusing: set[str] = field(default_factory=set)
    # Calls answered 45009 (API quota reached) before the next is taken.
    wechat_over_quota: int = 0
    mail: list[Message] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    storms: dict[str, Storm] = field(default_factory=dict)

    def webhook(self, name: str) -> WebhookInbox:
        return self.webhooks.setdefault(name, WebhookInbox())

    async def _webhook(self, request: Request) -> Response:
        inbox = self.webhook(request.path_params["name"])
        body = await request.body()
        seen = {"headers": dict(request.headers), "body": body}
        inbox.raw.append(seen)
        key = request.headers.get("idempotency-key", "")
        inbox.keys[key] += 1
        if inbox.status != 200:
            return JSONResponse({"error": "refused"}, status_code=inbox.status)
        refused = self._storm_answer("webhook", key)
        if refused is not None:
            return refused
        self.deliveries.append(Delivery("webhook", key, time.monotonic()))
        # Honours Idempotency-Key: a key seen before is acknowledged, not stored again.
        inbox.by_key.setdefault(key, seen)
        return JSONResponse({"id": f"wh_{len(inbox.by_key)}"})

    async def _twilio(self, request: Request) -> Response:
        try:
            body = await request.body()
        except ClientDisconnect:  # dispatch gave up before it sent the whole request
            return Response(status_code=499)
        form = dict(parse_qsl(body.decode()))  # no python-multipart here
        key = request.headers.get("idempotency-key", "")
        refused = self._storm_answer("sms", key)
        if refused is not None:
            return refused
        self.deliveries.append(Delivery("sms", key, time.monotonic()))
        sid = f"SM{len(self.sms):032d}"
        self.sms.append({**form, "sid": sid, "auth": request.headers.get("authorization")})
        return JSONResponse({"sid": sid, "status": "queued"}, status_code=201)

    def _storm_answer(self, channel: str, key: str) -> Response | None:
        """A storm's refusal of this request, or None to accept it."""
        storm = self.storms.get(channel)
        answer = storm.answer(key) if storm is not None else "ok"
        if answer == "error":
            return JSONResponse({"error": "internal error"}, status_code=503)
        if answer == "throttle":
            assert storm is not None
            headers = {"Retry-After": str(storm.retry_after_s)}
            return JSONResponse(_THROTTLED, status_code=429, headers=headers)
        return None

    async def _fcm(self, request: Request) -> Response:
        body = await request.json()
        if request.headers.get("authorization") != "Bearer fcm-token":
            return JSONResponse({"error": {"status": "UNAUTHENTICATED"}}, status_code=401)
        self.push.append(body)
        name = f"projects/{request.path_params['project']}/messages/{len(self.push)}"
        return JSONResponse({"name": name})

    @property
    def wechat_tokens_issued(self) -> int:
        return sum(self.wechat_tokens.values())

    async def _wecom_token(self, request: Request) -> Response:
        if request.query_params.get("corpsecret") not in ("wecom-secret", "contact-secret"):
            return JSONResponse({"errcode": 40001, "errmsg": "invalid credential"})
        return JSONResponse({"errcode": 0, "access_token": "wecom-token", "expires_in": 7200})

    async def _wecom_send(self, request: Request) -> Response:
        if request.query_params.get("access_token") != "wecom-token":
            return JSONResponse({"errcode": 40014, "errmsg": "invalid access_token"})
        self.wecom.append(await request.json())
        return JSONResponse({"errcode": 0, "errmsg": "ok", "msgid": f"wc{len(self.wecom)}"})

    async def _wecom_add_msg_template(self, request: Request) -> Response:
        if request.query_params.get("access_token") != "wecom-token":
            return JSONResponse({"errcode": 40014, "errmsg": "invalid access_token"})
        body = await request.json()
        customers = body.get("external_userid") or []
        if not body.get("text") and not body.get("attachments"):
            return JSONResponse({"errcode": 41048, "errmsg": "text and attachments are empty"})
        if any(not str(c).startswith("wm") for c in customers):
            return JSONResponse({"errcode": 40096, "errmsg": "invalid external userid"})
        failed = [c for c in customers if c in self.wecom_strangers]
        self.wecom_contact.append(body)
        msgid = f"msg{len(self.wecom_contact):08d}"
        return JSONResponse({"errcode": 0, "errmsg": "ok", "fail_list": failed, "msgid": msgid})

    async def _wechat_token(self, request: Request) -> Response:
        app_id = request.query_params.get("appid", "")
        if request.query_params.get("grant_type") != "client_credential":
            return JSONResponse({"errcode": 40002, "errmsg": "invalid grant_type"})
        if not app_id.startswith("wx"):
            return JSONResponse({"errcode": 40013, "errmsg": "invalid appid"})
        self.wechat_tokens[app_id] += 1
        token = f"{app_id}-token-{self.wechat_tokens[app_id]}"
        self.wechat_current[app_id] = token
        return JSONResponse({"access_token": token, "expires_in": 7200})

    def _wechat_refusal(self, request: Request, body: dict[str, Any]) -> Response | None:
        """The errcode answer a WeChat send gets before its own checks, or None."""
        token = request.query_params.get("access_token", "")
        if self.wechat_expire_next or token not in self.wechat_current.values():
            self.wechat_expire_next = False
            return JSONResponse({"errcode": 42001, "errmsg": "access_token expired"})
        if self.wechat_over_quota > 0:
            self.wechat_over_quota -= 1
            return JSONResponse({"errcode": 45009, "errmsg": "reach max api daily quota limit"})
        if not _OPENID.match(str(body.get("touser", ""))):
            return JSONResponse({"errcode": 40003, "errmsg": "invalid openid"})
        return None

    async def _wechat_send(self, request: Request) -> Response:
        body = await request.json()
        refused = self._wechat_refusal(request, body)
        if refused is not None:
            return refused
        if body["touser"] in self.wechat_refusing:
            return JSONResponse({"errcode": 43004, "errmsg": "require subscribe"})
        self.wechat.append(body)
        return JSONResponse({"errcode": 0, "errmsg": "ok", "msgid": 1000 + len(self.wechat)})

    async def _wechat_subscribe_send(self, request: Request) -> Response:
        body = await request.json()
        refused = self._wechat_refusal(request, body)
        if refused is not None:
            return refused
        data = body.get("data")
        empty = _empty_subscribe_value(data)
        if empty is not None:
            message = f"argument invalid! data.{empty}.value is empty"
            return JSONResponse({"errcode": 47003, "errmsg": message})
        if body["touser"] in self.wechat_refusing:
            return JSONResponse({"errcode": 43101, "errmsg": "user refuse to accept the msg"})
        if body.get("miniprogram_state", "formal") not in ("formal", "trial", "developer"):
            return JSONResponse({"errcode": 47003, "errmsg": "argument invalid! miniprogram_state"})
        self.subscribe.append(body)
        return JSONResponse({"errcode": 0, "errmsg": "ok", "msgid": 3000 + len(self.subscribe)})

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/hook/{name}", self._webhook, methods=["POST"]),
                Route("/2010-04-01/Accounts/{sid}/Messages.json", self._twilio, methods=["POST"]),
                Route("/v1/projects/{project}/messages:send", self._fcm, methods=["POST"]),
                Route("/cgi-bin/gettoken", self._wecom_token),
                Route("/cgi-bin/message/send", self._wecom_send, methods=["POST"]),
                Route("/cgi-bin/token", self._wechat_token),
                Route("/cgi-bin/message/template/send", self._wechat_send, methods=["POST"]),
                Route(
                    "/cgi-bin/message/subscribe/send",
                    self._wechat_subscribe_send,
                    methods=["POST"],
                ),
                Route(
                    "/cgi-bin/externalcontact/add_msg_template",
                    self._wecom_add_msg_template,
                    methods=["POST"],
                ),
            ]
        )


class _MailHandler:
    def __init__(self, providers: Providers) -> None:
        self._providers = providers

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("bounce"):
            return "550 5.1.1 mailbox does not exist"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        mail = message_from_bytes(content)
        key = str(mail["Message-ID"] or "")
        storm = self._providers.storms.get("email")
        answer = storm.answer(key, says_when=False) if storm is not None else "ok"
        if answer == "error":
            return "451 4.3.0 temporary server error, try again later"
        if answer == "throttle":
            return "450 4.7.1 too many messages, try again later"
        self._providers.mail.append(mail)
        self._providers.deliveries.append(Delivery("email", key, time.monotonic()))
        return "250 Message accepted"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running_providers() -> Any:
    """(providers, http base URL, smtp port) while the fakes run."""
    providers = Providers()
    # Bound here and handed over, so no other process can take the port in between.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = uvicorn.Config(providers.app(), log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    smtp_port = free_port()
    controller = Controller(_MailHandler(providers), hostname="127.0.0.1", port=smtp_port)
    controller.start()

    async def started() -> bool:
        return bool(server.started)

    await wait_for(started, within=10, what="the fake providers to listen")
    try:
        yield providers, f"http://127.0.0.1:{port}", smtp_port
    finally:
        controller.stop()
        server.should_exit = True
        await task
        listener.close()
