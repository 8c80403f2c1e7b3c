"""What a handler sees and returns: plain data, no broker library types."""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pydantic_core

from schemas.events import (
    EVENT_ID_NAMESPACE,
    EVENT_TYPES,
    TYPE_OF,
    CloudEvent,
    EventData,
    make_event,
)

_NAMESPACE = EVENT_ID_NAMESPACE.bytes


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
        return cls._event(
            event.id,
            event.type,
            event.subject,
            event.correlationid,
            event.routing_key,
            event.model_dump_json().encode(),
        )

    @classmethod
    def _event(
        cls, id_: str, type_: str, subject: str, correlation_id: str, key: str, body: bytes
    ) -> Outgoing:
        return cls(
            exchange="support.events",
            routing_key=key,
            body=body,
            message_id=id_,
            correlation_id=correlation_id,
            headers={"ce-type": type_, "ce-subject": subject},
            log={"event_id": id_, "ticket_id": subject, "event_type": type_},
        )

    @classmethod
    def from_data(
        cls,
        data: EventData,
        *,
        service: str,
        subject: str,
        cause: str,
        correlation_id: str,
        now: datetime,
    ) -> Outgoing:
        """`Outgoing.event(make_event(data, ...))`, byte for byte, with `data` serialized
        once: make_event dumps it to a dict, validates the envelope around that dict, and
        the envelope is dumped again. Here the envelope is pydantic-core's JSON of the
        same fields with the data model's own JSON in place of the dict."""
        if now.utcoffset() is None or not _is_source_name(service):  # the envelope refuses
            return cls.event(
                make_event(
                    data,
                    service=service,
                    subject=subject,
                    cause=cause,
                    correlation_id=correlation_id,
                    now=now,
                )
            )
        event_type = TYPE_OF[type(data)]
        id_ = event_id(subject, event_type, cause)
        head = pydantic_core.to_json(
            {
                "specversion": "1.0",
                "id": id_,
                "source": f"/premium-support/{service}",
                "type": event_type,
                "subject": subject,
                "time": now,
                "datacontenttype": "application/json",
                "correlationid": correlation_id,
            }
        )
        body = head[:-1] + b',"data":' + data.model_dump_json().encode() + b"}"
        return cls._event(id_, event_type, subject, correlation_id, routing_key(data), body)


@functools.cache
def _is_source_name(service: str) -> bool:
    return re.fullmatch(r"[a-z_]+", service) is not None  # CloudEvent.source's pattern


def event_id(ticket_id: str, event_type: str, cause: str) -> str:
    """schemas.events.event_id without the uuid module's objects: a UUID 5 is the
    first 16 bytes of the SHA-1 of namespace and name, with version and variant set."""
    digest = hashlib.sha1(_NAMESPACE + f"{ticket_id}|{event_type}|{cause}".encode()).digest()
    raw = bytearray(digest[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50
    raw[8] = (raw[8] & 0x3F) | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def routing_key(data: EventData) -> str:
    """CloudEvent.routing_key, read off the data model instead of its dump."""
    _, prefix = EVENT_TYPES[TYPE_OF[type(data)]]
    if prefix == "ticket.opened":
        return f"{prefix}.{data.ticket.severity}"  # type: ignore[attr-defined]
    if prefix.startswith("sla."):
        return f"{prefix}.{data.severity}"  # type: ignore[attr-defined]
    return prefix
