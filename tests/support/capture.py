"""Read what the services published, from the outside, with pika."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import pika

from services.upstream import pika_parameters


@dataclass
class Received:
    routing_key: str
    body: bytes
    headers: dict[str, Any]
    message_id: str | None
    content_type: str | None

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Capture:
    """A durable queue bound to an exchange; `take` drains it with fresh connections,
    so it keeps working after the broker closes every connection."""

    url: str
    queue: str
    received: list[Received] = field(default_factory=list)

    @classmethod
    def bind(cls, url: str, queue: str, exchange: str, keys: tuple[str, ...] = ("#",)) -> Capture:
        conn = pika.BlockingConnection(pika_parameters(url))
        ch = conn.channel()
        ch.queue_declare(queue, durable=True, arguments={"x-queue-type": "quorum"})
        for key in keys:
            ch.queue_bind(queue, exchange, key)
        conn.close()
        return cls(url, queue)

    def take(self, count: int, timeout: float = 15.0, settle: float = 0.0) -> list[Received]:
        """Wait until at least `count` messages arrived (then `settle` s more for extras)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            self._drain()
            if len(self.received) < count:
                time.sleep(0.05)
        if settle:
            time.sleep(settle)
            self._drain()
        return self.received

    def drain(self) -> list[Received]:
        """Read whatever has arrived by now (once, without waiting); returns all so far."""
        self._drain()
        return self.received

    def _drain(self) -> None:
        try:
            conn = pika.BlockingConnection(pika_parameters(self.url))
        except pika.exceptions.AMQPConnectionError:
            return
        try:
            ch = conn.channel()
            while True:
                method, props, body = ch.basic_get(self.queue, auto_ack=True)
                if method is None:
                    break
                self.received.append(
                    Received(
                        method.routing_key,
                        body,
                        dict(props.headers or {}),
                        props.message_id,
                        props.content_type,
                    )
                )
        finally:
            conn.close()


def queue_depth(url: str, queue: str) -> int:
    conn = pika.BlockingConnection(pika_parameters(url))
    try:
        return int(conn.channel().queue_declare(queue, passive=True).method.message_count)
    finally:
        conn.close()
