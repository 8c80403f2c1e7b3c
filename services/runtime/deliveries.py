"""py-amqp deliveries handed to the consume loop without kombu's Message.

kombu turns every delivery into a `kombu.Message` (a dozen attributes, a decompress
check, an accept list) before the loop's callback sees it, which cost about as much as
the callback itself. The loop reads five attributes and acks or rejects; `Delivered`
is those, over py-amqp's own message. A delivery kombu would treat specially (a
`compression` header: kombu decompresses it, or reports why it cannot) still goes
through kombu, and on other transports (in-memory) nothing changes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import amqp
from kombu import Consumer
from kombu.exceptions import MessageStateError

from services.runtime.messages import Inbound


class Delivered:
    """What the loop uses of a kombu Message, for one py-amqp delivery."""

    __slots__ = (
        "_channel",
        "_settled",
        "body",
        "content_type",
        "delivery_info",
        "delivery_tag",
        "headers",
        "properties",
    )

    def __init__(self, raw: amqp.Message, headers: dict[str, Any]) -> None:
        props = raw.properties
        self._channel = raw.channel
        self._settled = False
        self.body = raw.body
        self.content_type = props.get("content_type")
        self.delivery_info = raw.delivery_info
        self.delivery_tag = raw.delivery_info["delivery_tag"]
        self.headers = headers
        self.properties = props

    @classmethod
    def of(
        cls,
        channel: Any,
        delivery_info: dict[str, Any],
        properties: dict[str, Any],
        headers: dict[str, Any],
        body: bytes,
    ) -> Delivered:
        """A delivery parsed from its frames (services.runtime.deliver_frames)."""
        self = cls.__new__(cls)
        self._channel = channel
        self._settled = False
        self.body = body
        self.content_type = properties.get("content_type")
        self.delivery_info = delivery_info
        self.delivery_tag = delivery_info["delivery_tag"]
        self.headers = headers
        self.properties = properties
        return self

    def _settle(self) -> Any:
        if self._settled:  # as kombu refuses it: a second settle would close the channel
            raise MessageStateError(f"message {self.delivery_tag} already settled")
        self._settled = True
        return self._channel

    def ack(self, multiple: bool = False) -> None:
        self._settle().basic_ack(self.delivery_tag, multiple=multiple)

    def reject(self, requeue: bool = False) -> None:
        self._settle().basic_reject(self.delivery_tag, requeue=requeue)


class DeliveringConsumer(Consumer):  # type: ignore[misc]
    """A kombu Consumer whose `on_message` gets py-amqp deliveries as `Delivered`."""

    def _receive_callback(self, message: Any) -> Any:
        if isinstance(message, amqp.Message) and self.on_message is not None:
            headers = message.properties.get("application_headers") or {}
            if "compression" not in headers:
                return self.on_message(Delivered(message, headers))
        return super()._receive_callback(message)


@dataclass
class Delivery:
    message: Any  # Delivered or kombu.Message; only the loop touches it
    inbound: Inbound
    generation: int
    attempts: int = 0
    first_failure: datetime | None = None
    started: float = field(default_factory=time.perf_counter)


def to_inbound(message: Any) -> Inbound:
    props = message.properties
    info = message.delivery_info
    body = message.body
    # positional: a frozen dataclass takes keywords at half as much again, per delivery
    return Inbound(
        body if isinstance(body, bytes) else str(body).encode(),
        info.get("routing_key", ""),  # routing_key
        info.get("exchange", ""),  # exchange
        message.content_type or None,  # content_type
        dict(message.headers or {}),  # headers
        props.get("message_id"),  # message_id
        props.get("correlation_id"),  # correlation_id
        bool(info.get("redelivered")),  # redelivered
    )
