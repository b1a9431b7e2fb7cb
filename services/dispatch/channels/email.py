"""Email over SMTP with aiosmtplib; the Message-ID is derived from the idempotency key, and a
message of a subscription topic carries RFC 8058's one-click unsubscribe headers."""

from __future__ import annotations

import email.policy
import hashlib
from email.errors import MessageError
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from services.dispatch.channels.base import OutgoingMessage, SendResult, require_recipient
from services.dispatch.channels.config import EmailConfig


def message_id_header(idempotency_key: str, from_address: str) -> str:
    """The same key always gives the same Message-ID, so a resend is recognisably the same mail."""
    digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]
    domain = from_address.rsplit("@", 1)[-1]
    return f"<{digest}@{domain}>"


# SMTP's own line limit (RFC 5321), not the 78 characters headers are folded at by default: a
# List-Unsubscribe URL has no space to fold at, and folding it otherwise writes it as RFC 2047
# encoded words, which no mailbox provider reads as a URL. 7bit: what any server accepts.
_WIRE = email.policy.SMTP.clone(max_line_length=998, cte_type="7bit")
_WIRE_UTF8 = email.policy.SMTPUTF8.clone(max_line_length=998, cte_type="7bit")
ONE_CLICK = "List-Unsubscribe=One-Click"


def flattened(mail: EmailMessage, recipient: str) -> bytes:
    """The mail as sent: headers unfolded up to SMTP's limit, 7-bit, SMTPUTF8 only when the
    address needs it."""
    return mail.as_bytes(policy=_WIRE if recipient.isascii() else _WIRE_UTF8)


def list_unsubscribe(url: str, mailto: str | None) -> str:
    """RFC 2369's List-Unsubscribe value: the one-click URL, then the mailbox if there is one
    (its subject names the same signed token, for whoever reads that mailbox)."""
    token = url.rstrip("/").rsplit("/", 1)[-1]
    targets = [f"<{url}>"]
    if mailto:
        targets.append(f"<mailto:{mailto}?subject=unsubscribe%20{token}>")
    return ", ".join(targets)


def classify_smtp(code: int, message: str) -> SendResult:
    """SMTP 4xx asks to try again later; 5xx (and anything else) will not change."""
    error = f"SMTP {code} {message}".strip()
    return SendResult.transient(error) if 400 <= code < 500 else SendResult.permanent(error)


class EmailChannel:
    def __init__(self, config: EmailConfig, timeout: float) -> None:
        self._config = config
        self._timeout = timeout

    def compose(self, message: OutgoingMessage, recipient: str) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self._config.from_address
        mail["To"] = recipient
        mail["Subject"] = message.subject or ""
        mail["Date"] = formatdate(localtime=False)
        mail["Message-ID"] = message_id_header(message.idempotency_key, self._config.from_address)
        if message.unsubscribe_url is not None:
            mail["List-Unsubscribe"] = list_unsubscribe(
                message.unsubscribe_url, self._config.unsubscribe_mailto
            )
            mail["List-Unsubscribe-Post"] = ONE_CLICK
        body = message.body or ""
        mail.set_content(body, subtype="html" if "<" in body and ">" in body else "plain")
        return mail

    async def send(self, message: OutgoingMessage) -> SendResult:
        recipient = require_recipient(message, "an email address")
        if isinstance(recipient, SendResult):
            return recipient
        config = self._config
        try:
            mail = self.compose(message, recipient)
            raw = flattened(mail, recipient)
        except (ValueError, TypeError, MessageError) as error:
            return SendResult.permanent(f"the message cannot be written as email: {error}")
        try:
            await aiosmtplib.send(
                raw,
                sender=config.from_address,
                recipients=[recipient],
                hostname=config.host,
                port=config.port,
                username=config.username,
                password=config.password,
                use_tls=config.tls == "implicit",
                start_tls=config.tls == "starttls",
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            refused = error.recipients[0]
            return classify_smtp(refused.code, refused.message)
        except aiosmtplib.SMTPResponseException as error:
            return classify_smtp(error.code, error.message)
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            return SendResult.transient(f"SMTP {type(error).__name__}: {error}")
        return SendResult.sent(mail["Message-ID"])
