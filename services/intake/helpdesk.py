"""Helpdesk lifecycle updates and on-call acknowledgements -> canonical events."""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.events import (
    CloudEvent,
    EscalationAcknowledged,
    EventData,
    TicketExempted,
    TicketReclassified,
    TicketResolved,
    TicketResponded,
    make_event,
)
from schemas.inbound import (
    Acknowledged,
    Exempted,
    FirstResponse,
    Reclassified,
    Resolved,
)

Update = FirstResponse | Reclassified | Exempted | Resolved | Acknowledged


def _data(update: Update) -> EventData:
    match update:
        case FirstResponse():
            return TicketResponded(ticket_id=update.ticket_id, at=update.at, agent=update.agent)
        case Reclassified():
            return TicketReclassified(
                ticket_id=update.ticket_id,
                at=update.at,
                severity=update.severity,
                reason=update.reason,
            )
        case Exempted():
            return TicketExempted(ticket_id=update.ticket_id, at=update.at, reason=update.reason)
        case Resolved():
            return TicketResolved(ticket_id=update.ticket_id, at=update.at)
        case Acknowledged():
            return EscalationAcknowledged(ticket_id=update.ticket_id, at=update.at, by=update.by)


def normalize_helpdesk(update: Update, correlation_id: str, now: datetime) -> list[CloudEvent]:
    """The cause is the update's type and instant: the same update twice is one event."""
    return [
        make_event(
            _data(update),
            service="intake",
            subject=update.ticket_id,
            cause=f"{update.type}:{update.at.astimezone(UTC).isoformat()}",
            correlation_id=correlation_id,
            now=now,
        )
    ]
