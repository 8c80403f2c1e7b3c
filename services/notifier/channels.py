"""Channel adapters of the notifier: each delivers one rendered message per `send`.

- `SmtpChannel` (email, `render.render_email`), `ChatWebhookChannel` (`render_chat`),
  `PagingWebhookChannel` (`render_pagerduty`), `GenericWebhookChannel` (`render_generic`,
  HMAC-signed; receivers use `verify_signature`), `ConsoleChannel` (`render_console`).
- Every network call has a timeout. Transient failures (timeouts, refused connections,
  HTTP 408/429/5xx, SMTP 4xx) are retried inside `send` per a `RetryPolicy` (tenacity:
  exponential backoff with jitter, 3 attempts by default), then raised as
  `TransientError`; permanent ones (other HTTP 4xx, SMTP 5xx, bad configuration) raise
  `PermanentError` at once. Both come from `services.runtime.errors`.
"""

from __future__ import annotations

from typing import TextIO

from services.notifier.channels_base import DEFAULT_TIMEOUT_S, RetryPolicy, with_retries
from services.notifier.channels_http import (
    ChatWebhookChannel,
    GenericWebhookChannel,
    PagingWebhookChannel,
    WebhookChannel,
    sign,
    verify_signature,
)
from services.notifier.channels_smtp import SmtpChannel, message_id_for
from services.runtime.errors import TransientError

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "ChatWebhookChannel",
    "ConsoleChannel",
    "GenericWebhookChannel",
    "PagingWebhookChannel",
    "RetryPolicy",
    "SmtpChannel",
    "WebhookChannel",
    "message_id_for",
    "sign",
    "verify_signature",
    "with_retries",
]


class ConsoleChannel:
    """Writes `render.render_console` output to a text stream (the demo, operators)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def send(self, text: str) -> None:
        try:
            self.stream.write(text if text.endswith("\n") else text + "\n")
            self.stream.flush()
        except OSError as exc:
            raise TransientError(f"console: {exc!r}", reason="console_unavailable") from exc
