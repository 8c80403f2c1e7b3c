"""Canonical events on support.events (DESIGN.md section 5).

Each event is a CloudEvents 1.0 structured JSON document; `data` is one of the models
below. `EVENT_TYPES` is the catalogue: CloudEvents type -> (data model, routing key
prefix). Routing key = prefix, plus `.<severity>` where the data carries a severity.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

from schemas.inbound import Severity, TicketId
from schemas.ticket import Attachment, Channel, Ticket

EVENT_ID_NAMESPACE = uuid.UUID("6f1f3c55-6a55-4c4b-9a52-5d0c1e7d2b11")


class EventData(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TicketOpened(EventData):
    ticket: Ticket


class TicketUpdated(EventData):
    """A customer follow-up on an existing ticket (an email reply, a later chat message)."""

    ticket_id: TicketId
    channel: Channel
    at: AwareDatetime
    author: str | None = None
    text: str = ""
    attachments: list[Attachment] = Field(default_factory=list)
    source: dict[str, Any] = Field(default_factory=dict)


class TicketResponded(EventData):
    ticket_id: TicketId
    at: AwareDatetime
    agent: str


class TicketReclassified(EventData):
    ticket_id: TicketId
    at: AwareDatetime
    severity: Severity
    reason: str | None = None


class TicketExempted(EventData):
    ticket_id: TicketId
    at: AwareDatetime
    reason: str


class TicketResolved(EventData):
    ticket_id: TicketId
    at: AwareDatetime


class TicketPaused(EventData):
    """The helpdesk waits on the customer (helpdesk `waiting_on_customer`)."""

    ticket_id: TicketId
    at: AwareDatetime
    reason: str | None = None


class TicketResumed(EventData):
    """The wait on the customer ended (helpdesk `resumed`)."""

    ticket_id: TicketId
    at: AwareDatetime


Metric = Literal["first_response", "next_reply", "periodic_update", "resolution"]
METRICS: tuple[Metric, ...] = ("first_response", "next_reply", "periodic_update", "resolution")


class _SlaData(EventData):
    ticket_id: TicketId
    # Additive: a consumer that predates it reads every sla event as first_response's.
    metric: Metric = Field(
        default="first_response",
        description="Which clock: first_response, next_reply (each customer follow-up), "
        "periodic_update (agent updates while open) or resolution",
    )
    round: int = Field(
        default=1, ge=1, description="next_reply and periodic_update: which reply or update"
    )
    severity: Severity

    # NOTE: a first_response event is written without `metric` and `round`, byte for
    # byte as before there were metrics: a consumer from before them (whose models forbid
    # unknown fields) keeps reading it. Only the other metrics' events carry the fields.
    @model_serializer(mode="wrap")
    def _as_before_metrics(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        if out.get("metric") == "first_response" and out.get("round") == 1:
            del out["metric"], out["round"]
        return out

    guaranteed: bool
    policy_rule: str
    policy_version: str
    started_at: AwareDatetime
    due_at: AwareDatetime


class SlaScheduled(_SlaData):
    warn_at: AwareDatetime | None
    calendar: str


class _SlaFired(_SlaData):
    fired_at: AwareDatetime
    lateness_ms: int = Field(ge=0, description="fired_at - the instant it was due")


class SlaWarning(_SlaFired):
    warn_at: AwareDatetime


class SlaBreached(_SlaFired):
    pass


class SlaMet(_SlaData):
    responded_at: AwareDatetime = Field(
        description="When the metric was met: the agent reply or update, or the resolution"
    )
    outcome: Literal["met", "responded_late"]


class _EscalationData(EventData):
    ticket_id: TicketId
    reason: str = Field(description="What triggered it: opened, warning, breached, ...")
    level: int = Field(ge=0, description="0: the team channel")
    person: str = Field(description="A person id from the on-call file, or 'team'")
    channel: Literal[
        "email", "chat_webhook", "paging_webhook", "generic_webhook", "console", "team_digest"
    ]
    notification_key: str


class EscalationSent(_EscalationData):
    sent_at: AwareDatetime


class EscalationFailed(_EscalationData):
    """A notification given up: every contact method failed for the whole retry budget,
    or failed for good. It is also dead-lettered, and the team channel is told."""

    failed_at: AwareDatetime
    attempts: int = Field(ge=1, description="Send attempts made, over all contact methods")
    error: str = Field(description="The last error, naming person and channel, never a URL")


class EscalationCancelled(_EscalationData):
    """A queued or dead-lettered notification no longer needed (the ticket was closed or
    acknowledged meanwhile), so it was not sent."""

    cancelled_at: AwareDatetime
    why: str


class EscalationAcknowledged(EventData):
    ticket_id: TicketId
    at: AwareDatetime
    by: str


EVENT_TYPES: dict[str, tuple[type[EventData], str]] = {
    "support.ticket.opened": (TicketOpened, "ticket.opened"),
    "support.ticket.updated": (TicketUpdated, "ticket.updated"),
    "support.ticket.responded": (TicketResponded, "ticket.responded"),
    "support.ticket.reclassified": (TicketReclassified, "ticket.reclassified"),
    "support.ticket.exempted": (TicketExempted, "ticket.exempted"),
    "support.ticket.resolved": (TicketResolved, "ticket.resolved"),
    "support.ticket.paused": (TicketPaused, "ticket.paused"),
    "support.ticket.resumed": (TicketResumed, "ticket.resumed"),
    "support.sla.scheduled": (SlaScheduled, "sla.scheduled"),
    "support.sla.warning": (SlaWarning, "sla.warning"),
    "support.sla.breached": (SlaBreached, "sla.breached"),
    "support.sla.met": (SlaMet, "sla.met"),
    "support.escalation.sent": (EscalationSent, "escalation.sent"),
    "support.escalation.failed": (EscalationFailed, "escalation.failed"),
    "support.escalation.cancelled": (EscalationCancelled, "escalation.cancelled"),
    "support.escalation.acknowledged": (EscalationAcknowledged, "escalation.acknowledged"),
}
TYPE_OF: dict[type[EventData], str] = {model: name for name, (model, _) in EVENT_TYPES.items()}


class CloudEvent(BaseModel):
    """CloudEvents 1.0, structured mode, with the `correlationid` extension."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(pattern=r"^/premium-support/[a-z_]+$")
    type: str = Field(pattern=r"^support\.[a-z_]+\.[a-z_]+$")
    subject: str
    time: AwareDatetime
    datacontenttype: Literal["application/json"] = "application/json"
    correlationid: str
    data: dict[str, Any]

    @property
    def routing_key(self) -> str:
        """Event type, plus the severity as last word where the event has one
        (ticket.opened and sla.*; a reclassification's new severity is data, not key)."""
        _, prefix = EVENT_TYPES[self.type]
        if prefix == "ticket.opened":
            return f"{prefix}.{self.data['ticket']['severity']}"
        if prefix.startswith("sla."):
            return f"{prefix}.{self.data['severity']}"
        return prefix

    def parsed(self) -> EventData:
        model, _ = EVENT_TYPES[self.type]
        return model.model_validate(self.data)


def event_id(ticket_id: str, event_type: str, cause: str) -> str:
    """Deterministic id: the same ticket, type and cause always give the same id."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{ticket_id}|{event_type}|{cause}"))


def make_event(
    data: EventData, *, service: str, subject: str, cause: str, correlation_id: str, now: datetime
) -> CloudEvent:
    """Wrap `data` in an envelope whose id is derived from subject, type and cause."""
    event_type = TYPE_OF[type(data)]
    # NOTE: validating the envelope (in pydantic-core) costs less than model_construct,
    # which is Python; `data` is already a checked model's dump.
    return CloudEvent(
        id=event_id(subject, event_type, cause),
        source=f"/premium-support/{service}",
        type=event_type,
        subject=subject,
        time=now,
        correlationid=correlation_id,
        data=data.model_dump(mode="json"),
    )
