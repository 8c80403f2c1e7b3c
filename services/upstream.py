"""What an upstream system does: publish to support.inbound with pika and confirms.

Used by `premium-support publish`, by the tests (the outside view) and by the
benchmarks' load generators. The services themselves never import pika.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
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
