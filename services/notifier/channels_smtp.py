"""Email over SMTP (stdlib smtplib): a text and an HTML part, one message per send.

Headers go through `email.message.EmailMessage` with the default policy, which refuses
CR/LF in a header value, so no ticket text can add a header. The Message-ID is derived
from the notification key: a resend after a crash carries the same id, so a receiving
system (or a person) can recognise the duplicate.
"""

from __future__ import annotations

import base64
import hashlib
import smtplib
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import formatdate

from services.notifier.channels_base import (
    DEFAULT_TIMEOUT_S,
    RetryPolicy,
    invalid_config,
    with_retries,
)
from services.notifier.render import EmailContent
from services.runtime.errors import PermanentError, PipelineError, TransientError
from services.runtime.secrets import redact

__all__ = ["SmtpChannel", "message_id_for", "smtp_error"]


def message_id_for(key: str, sender: str) -> str:
    """A stable Message-ID for a notification key, in the sender's domain."""
    domain = sender.rpartition("@")[2] or "premium-support.invalid"
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]
    return f"<notify.{digest}@{domain}>"


def _by_code(code: int, detail: str) -> PipelineError:
    if 400 <= code < 500:
        return TransientError(f"SMTP {code}: {detail}", reason="smtp_temporary")
    return PermanentError(f"SMTP {code}: {detail}", reason="smtp_rejected")


def smtp_error(exc: Exception, hidden: Sequence[str] = ()) -> PipelineError:
    """Classify an smtplib / socket failure: 4xx and connection trouble are transient.

    `hidden` (the password and its AUTH encodings) is masked in the text: a server's
    reply may quote what it was sent."""
    error = _classify(exc)
    return type(error)(redact(error.detail, hidden), reason=error.reason)


def _classify(exc: Exception) -> PipelineError:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = f"recipients refused: {exc.recipients!r}"
        if codes and all(400 <= c < 500 for c in codes):
            return TransientError(detail, reason="smtp_temporary")
        return PermanentError(detail, reason="smtp_rejected")
    if isinstance(exc, smtplib.SMTPConnectError | smtplib.SMTPServerDisconnected):
        return TransientError(f"SMTP connection: {exc}", reason="smtp_unavailable")
    if isinstance(exc, smtplib.SMTPResponseException):
        raw = exc.smtp_error
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return _by_code(exc.smtp_code, text)
    if isinstance(exc, ssl.SSLCertVerificationError):
        return invalid_config(f"SMTP TLS certificate not trusted: {exc}")
    if isinstance(exc, smtplib.SMTPException):  # no STARTTLS / no AUTH method: configuration
        return invalid_config(f"SMTP: {exc}")
    if isinstance(exc, OSError):  # refused, reset, timeout, TLS handshake
        return TransientError(f"SMTP connection: {exc!r}", reason="smtp_unavailable")
    return PermanentError(f"SMTP: {exc!r}", reason="smtp_error")


def auth_forms(username: str | None, password: str | None) -> list[str]:
    """The password as it crosses the wire: itself, AUTH LOGIN's and AUTH PLAIN's base64."""
    if not password:
        return []
    plain = f"\0{username or ''}\0{password}".encode()
    return [
        password,
        base64.b64encode(password.encode()).decode("ascii"),
        base64.b64encode(plain).decode("ascii"),
    ]


class SmtpChannel:
    """Sends one multipart/alternative email per `send`; `timeout` bounds each socket call."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        starttls: bool,
        sender: str,
        username: str | None = None,
        password: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retry: RetryPolicy | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if not host or not 0 < port < 65536:
            raise invalid_config(f"SMTP server {host!r}:{port} is not a valid address")
        if "@" not in sender or any(c in sender for c in "\r\n"):
            raise invalid_config(f"SMTP sender {sender!r} is not an email address")
        if (username is None) != (password is None):
            raise invalid_config("SMTP username and password must be given together")
        if timeout <= 0:
            raise invalid_config("SMTP timeout must be positive")
        self.host, self.port, self.starttls = host, port, starttls
        self.sender, self.username, self.password = sender, username, password
        self._hidden = auth_forms(username, password)
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.local_hostname = local_hostname

    def build(self, to: str, content: EmailContent, key: str) -> EmailMessage:
        """The message as it is sent; `PermanentError` if a header value is unsafe."""
        msg = EmailMessage()
        try:
            msg["From"] = self.sender
            msg["To"] = to
            msg["Subject"] = content.subject
            msg["Message-ID"] = message_id_for(key, self.sender)
            msg["Date"] = formatdate(usegmt=True)
            msg["X-Premium-Support-Key"] = key
            msg["Auto-Submitted"] = "auto-generated"
            msg.set_content(content.text)
            msg.add_alternative(content.html, subtype="html")
        except (ValueError, TypeError) as exc:
            raise PermanentError(f"email for {key}: {exc}", reason="invalid_message") from exc
        return msg

    def send(self, to: str, content: EmailContent, *, key: str) -> str:
        """Deliver to `to`, retrying transient failures; returns the Message-ID."""
        msg = self.build(to, content, key)
        with_retries(self.retry, lambda: self._attempt(msg))
        return str(msg["Message-ID"])

    def _attempt(self, msg: EmailMessage) -> None:
        smtp: smtplib.SMTP | None = None
        try:
            smtp = smtplib.SMTP(
                self.host, self.port, local_hostname=self.local_hostname, timeout=self.timeout
            )
            smtp.ehlo()
            if self.starttls:
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if self.username is not None and self.password is not None:
                smtp.login(self.username, self.password)
            smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            if smtp is not None:
                smtp.close()
            raise smtp_error(exc, self._hidden) from None  # the cause may quote the AUTH
        # Accepted: a failing QUIT must not turn into a retry (that would send twice).
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
