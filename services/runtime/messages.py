"""What a handler sees and returns: plain data, no broker library types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from schemas.events import CloudEvent


@dataclass(frozen=True)
class Inbound:
    """One delivery, as the handler sees it."""

    body: bytes
    routing_key: str
    exchange: str
    content_type: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    message_id: str | None = None
    correlation_id: str | None = None
    redelivered: bool = False


@dataclass(frozen=True)
class Outgoing:
    """A message to publish. `exchange` is unprefixed; the publisher adds AMQP_PREFIX."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    content_type: str = "application/cloudevents+json"
    correlation_id: str | None = None
    headers: dict[str, Any] = field(default_factory=dict)
    mandatory: bool = False
    log: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def event(cls, event: CloudEvent) -> Outgoing:
        return cls(
            exchange="support.events",
            routing_key=event.routing_key,
            body=event.model_dump_json().encode(),
            message_id=event.id,
            correlation_id=event.correlationid,
            headers={"ce-type": event.type, "ce-subject": event.subject},
            log={"event_id": event.id, "ticket_id": event.subject, "event_type": event.type},
        )
