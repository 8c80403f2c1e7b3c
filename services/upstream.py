"""What an upstream system does: publish to support.inbound with pika and confirms.

Used by `premium-support publish`, by the tests (the outside view) and by the
benchmarks' load generators. The services themselves never import pika.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import pika

INBOUND_EXCHANGE = "support.inbound"


def pika_parameters(amqp_url: str) -> pika.URLParameters:
    """kombu writes the default vhost as '//'; pika wants it percent-encoded."""
    url = amqp_url
    scheme, _, rest = url.partition("://")
    host, slash, vhost = rest.partition("/")
    if slash and vhost in ("", "/"):
        url = f"{scheme}://{host}/%2F"
    return pika.URLParameters(url)


def content_type_for(channel: str, filename: str) -> str:
    return (
        "message/rfc822"
        if channel == "email" and filename.endswith(".eml")
        else ("application/json")
    )


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")
# The Date header with its folded continuation lines, in the header block only.
_DATE_HEADER = re.compile(rb"^Date:[ \t]*([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)", re.I | re.M)


def move_to_now(body: bytes, content_type: str, now: datetime) -> bytes:
    """`body` as if it had just been sent: every timestamp moved by the same amount, so
    that the earliest is `now` and their distances stay (a chat's messages stay in
    order after its start). A raw email's Date header becomes `now`. Raises ValueError
    when the body is not what its content type says."""
    if content_type.split(";")[0].strip().lower() == "message/rfc822":
        return _mime_to_now(body, now)
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise ValueError(f"not JSON, so its timestamps cannot be moved: {exc}") from None
    stamps = [datetime.fromisoformat(s) for s in _strings(payload) if _RFC3339.fullmatch(s)]
    if not stamps:
        return body
    shift = now - min(stamps)
    return json.dumps(_shifted(payload, shift), ensure_ascii=False).encode()


def _strings(value: Any) -> Iterable[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict | list):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _strings(item)


def _shifted(value: Any, shift: timedelta) -> Any:
    if isinstance(value, dict):
        return {k: _shifted(v, shift) for k, v in value.items()}
    if isinstance(value, list):
        return [_shifted(v, shift) for v in value]
    if isinstance(value, str) and _RFC3339.fullmatch(value):
        moved = (datetime.fromisoformat(value) + shift).isoformat(timespec="seconds")
        return moved.replace("+00:00", "Z") if value.endswith("Z") else moved
    return value


def _mime_to_now(raw: bytes, now: datetime) -> bytes:
    ends = [i for i in (raw.find(b"\r\n\r\n"), raw.find(b"\n\n")) if i >= 0]
    head, rest = raw[: min(ends, default=len(raw))], raw[min(ends, default=len(raw)) :]
    match = _DATE_HEADER.search(head)
    if match is None:
        raise ValueError("no Date header, so there is no timestamp to move")
    try:
        sent = parsedate_to_datetime(" ".join(match.group(1).decode("latin-1").split()))
    except (TypeError, ValueError):
        sent = now  # an unreadable Date: replaced by now all the same
    stamp = format_datetime(now.astimezone(sent.tzinfo or now.tzinfo)).encode()
    return head[: match.start(1)] + stamp + head[match.end(1) :] + rest


@dataclass
class UpstreamPublisher:
    amqp_url: str
    prefix: str = ""
    confirm: bool = True

    def __post_init__(self) -> None:
        self._conn = pika.BlockingConnection(pika_parameters(self.amqp_url))
        self._channel = self._conn.channel()
        if self.confirm:
            self._channel.confirm_delivery()

    def publish(
        self,
        channel: str,
        body: bytes,
        content_type: str = "application/json",
        message_id: str | None = None,
        routing_key: str | None = None,
        headers: dict[str, Any] | None = None,
    ) -> str:
        """Publish one message and wait for its confirm; returns its message id."""
        message_id = message_id or hashlib.sha256(body).hexdigest()[:32]
        self._channel.basic_publish(
            exchange=f"{self.prefix}{INBOUND_EXCHANGE}",
            routing_key=routing_key or f"inbound.{channel}",
            body=body,
            properties=pika.BasicProperties(
                content_type=content_type,
                delivery_mode=2,
                message_id=message_id,
                headers=headers,
            ),
            mandatory=False,
        )
        return message_id

    def publish_many(self, items: Iterable[tuple[str, bytes, str]]) -> int:
        count = 0
        for channel, body, content_type in items:
            self.publish(channel, body, content_type)
            count += 1
        return count

    def close(self) -> None:
        if self._conn.is_open:
            self._conn.close()

    def __enter__(self) -> UpstreamPublisher:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
