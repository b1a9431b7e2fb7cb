"""Email over SMTP with aiosmtplib; the Message-ID is derived from the idempotency key."""

from __future__ import annotations

import hashlib
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
        body = message.body or ""
        mail.set_content(body, subtype="html" if "<" in body and ">" in body else "plain")
        return mail

    async def send(self, message: OutgoingMessage) -> SendResult:
        recipient = require_recipient(message, "an email address")
        if isinstance(recipient, SendResult):
            return recipient
        try:
            mail = self.compose(message, recipient)
        except (ValueError, TypeError) as error:
            return SendResult.permanent(f"the message cannot be written as email: {error}")
        config = self._config
        try:
            await aiosmtplib.send(
                mail,
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
