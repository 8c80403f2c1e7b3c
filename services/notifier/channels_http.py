"""Webhook channels over HTTP (httpx): Slack-compatible chat, PagerDuty Events v2, and a
generic JSON webhook signed with HMAC-SHA256.

Each `send` POSTs one rendered body. Timeouts, connection errors, 408, 429 and 5xx are
transient (retried with backoff inside `send`, then raised as `TransientError`); any
other non-2xx answer is permanent (`PermanentError` at once). Redirects are not followed.

Signature of the generic webhook: `X-Signature-Timestamp: <unix seconds>` and
`X-Signature: sha256=<hex HMAC-SHA256(secret, f"{timestamp}.{raw body}")>`; receivers
check it with `verify_signature`. Each attempt is signed afresh, so a retry is never
refused as stale.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from services.notifier.channels_base import (
    DEFAULT_TIMEOUT_S,
    RetryPolicy,
    invalid_config,
    with_retries,
)
from services.runtime.errors import PermanentError, TransientError
from services.runtime.secrets import redact, url_secrets

__all__ = [
    "ChatWebhookChannel",
    "GenericWebhookChannel",
    "PagingWebhookChannel",
    "WebhookChannel",
    "sign",
    "verify_signature",
]

SIGNATURE_HEADER = "X-Signature"
TIMESTAMP_HEADER = "X-Signature-Timestamp"
KEY_HEADER = "X-Notification-Key"
CONNECT_TIMEOUT_S = 3.0


def _secret_bytes(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: str, body: bytes) -> str:
    """`sha256=<hex>` over `f"{timestamp}.{body}"`."""
    mac = hmac.new(_secret_bytes(secret), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def verify_signature(
    secret: str | bytes,
    timestamp: str,
    body: bytes,
    signature: str,
    now: float,
    tolerance_s: float = 300,
) -> bool:
    """A receiver's check: the signature matches and the timestamp is within tolerance."""
    try:
        ts = int(timestamp)
        timestamp.encode("ascii")
    except (TypeError, ValueError):
        return False
    if abs(now - ts) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def encode_json(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class WebhookChannel:
    """POSTs JSON to one URL; a subclass adds headers. Close it (or use `with`) when done."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as exc:
            raise invalid_config(f"{self.name} URL is not valid: {type(exc).__name__}") from exc
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise invalid_config(f"{self.name} URL is not an http(s) URL")
        if timeout <= 0:
            raise invalid_config(f"{self.name} timeout must be positive")
        self.url, self.timeout = url, timeout
        self._url_secrets = url_secrets(url)
        self.retry = retry or RetryPolicy()
        self._client = httpx.Client(
            # NOTE: a black-holed endpoint (SYN dropped) fails its connect in seconds, so
            # the page goes by the person's next contact method soon; a slow answer from
            # an endpoint that did connect keeps the full timeout.
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_S)),
            follow_redirects=False,
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def headers(self, raw: bytes, key: str | None) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "User-Agent": "premium-support-notifier"}
        if key is not None:
            headers[KEY_HEADER] = key
        return headers

    def send(self, body: Mapping[str, Any], *, key: str | None = None) -> int:
        """POST `body` as JSON, retrying transient failures; returns the 2xx status."""
        raw = encode_json(body)
        hidden = [*self._url_secrets, *self.secrets_of(body)]
        return with_retries(self.retry, lambda: self._attempt(raw, key, hidden))

    def secrets_of(self, body: Mapping[str, Any]) -> list[str]:
        """What else of a send no error may show (a subclass's keys and secrets)."""
        return []

    def _attempt(self, raw: bytes, key: str | None, hidden: list[str]) -> int:
        # NOTE: a webhook URL is a credential (Slack's carries its secret in the path):
        # errors, events and logs name the host only, and whatever text comes from httpx
        # or the endpoint has the URL's parts, keys and secrets masked. `from None`: the
        # httpx exception (its request holds the URL) is not chained into tracebacks.
        where = f"{self.name} at {httpx.URL(self.url).host}"
        try:
            response = self._client.post(self.url, content=raw, headers=self.headers(raw, key))
        except httpx.TimeoutException as exc:
            error = _describe(exc, hidden)
            raise TransientError(f"{where}: timed out ({error})", reason="timeout") from None
        except httpx.TransportError as exc:  # connect refused, reset, protocol trouble
            raise TransientError(
                f"{where}: {_describe(exc, hidden)}", reason="unreachable"
            ) from None
        status = response.status_code
        if 200 <= status < 300:
            return status
        answer = redact(response.text[:4096], hidden)[:200]  # masked before it is cut
        detail = f"{where}: HTTP {status} {answer!r}"
        if status in (408, 429) or status >= 500:
            raise TransientError(detail, reason=f"http_{status}")
        raise PermanentError(detail, reason=f"http_{status}")


def _describe(exc: Exception, hidden: list[str]) -> str:
    return f"{type(exc).__name__}: {redact(str(exc), hidden)}"


class ChatWebhookChannel(WebhookChannel):
    """Slack-compatible incoming webhook; body from `render.render_chat`/`render_digest`."""

    name = "chat webhook"


class PagingWebhookChannel(WebhookChannel):
    """PagerDuty Events API v2 (`render.render_pagerduty`); its `dedup_key` makes resends
    of a trigger, acknowledge or resolve harmless on the PagerDuty side."""

    name = "paging webhook"

    def send(self, body: Mapping[str, Any], *, key: str | None = None) -> int:
        if body.get("event_action") not in ("trigger", "acknowledge", "resolve"):
            raise PermanentError("paging body needs event_action", reason="invalid_message")
        if not body.get("routing_key") or not body.get("dedup_key"):
            raise PermanentError(
                "paging body needs routing_key and dedup_key", reason="invalid_message"
            )
        return super().send(body, key=key)

    def secrets_of(self, body: Mapping[str, Any]) -> list[str]:
        return [str(body.get("routing_key") or "")]  # the integration key pages anyone


class GenericWebhookChannel(WebhookChannel):
    """A JSON webhook (`render.render_generic`) signed with HMAC-SHA256 (see module doc)."""

    name = "generic webhook"

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        timeout: float = DEFAULT_TIMEOUT_S,
        *,
        retry: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not secret:
            raise invalid_config("generic webhook secret must not be empty")
        super().__init__(url, timeout, retry=retry, transport=transport)
        self._secret = _secret_bytes(secret)
        self._clock = clock

    def secrets_of(self, body: Mapping[str, Any]) -> list[str]:
        return [self._secret.decode("utf-8", "replace")]

    def headers(self, raw: bytes, key: str | None) -> dict[str, str]:
        timestamp = str(int(self._clock()))
        return super().headers(raw, key) | {
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(self._secret, timestamp, raw),
        }
