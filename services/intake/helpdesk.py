"""Helpdesk lifecycle updates and on-call acknowledgements -> canonical events.

An update's `at` must lie in a year from 2000 to 2100 (the model checks it; otherwise
the update is dead-lettered as `invalid_timestamp`). An `at` later than intake's clock
plus the allowed skew (`MAX_CLOCK_SKEW_S`) is clamped to intake's `now` and logged as
`intake.future_timestamp_clamped`, not dead-lettered: a first response, resolution or
acknowledgement really happened, and dropping it would leave a clock running and a
page escalating for a ticket someone is already on. Its instant cannot be later than
when intake heard of it, so `now` is the latest it can truthfully be; it is what
helpdesks do with a skewed agent clock. Taking the future time as sent would record a
first response after its deadline (a false breach) or an acknowledgement that has not
happened yet. The clamped time goes into the event's `at`; the event id still comes
from the reported time, so a redelivery yields the same id. (The ticket.* update
events carry no field for the reported time; the log line keeps it.)
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import (
    CloudEvent,
    EscalationAcknowledged,
    EventData,
    TicketExempted,
    TicketPaused,
    TicketReclassified,
    TicketResolved,
    TicketResponded,
    TicketResumed,
    make_event,
)
from schemas.inbound import (
    Acknowledged,
    AgentReply,
    AnyHelpdeskUpdate,
    Exempted,
    FirstResponse,
    Reclassified,
    Resolved,
    Resumed,
    WaitingOnCustomer,
)
from services.intake.timestamps import DEFAULT_MAX_SKEW, bound_future, warn_clamped

Update = AnyHelpdeskUpdate


def _data(update: Update, at: datetime) -> EventData:
    match update:
        # Every agent reply is one `ticket.responded`: the first stops first_response,
        # each one stops a next_reply round and restarts periodic_update.
        case FirstResponse() | AgentReply():
            return TicketResponded(ticket_id=update.ticket_id, at=at, agent=update.agent)
        case WaitingOnCustomer():
            return TicketPaused(ticket_id=update.ticket_id, at=at, reason=update.reason)
        case Resumed():
            return TicketResumed(ticket_id=update.ticket_id, at=at)
        case Reclassified():
            return TicketReclassified(
                ticket_id=update.ticket_id,
                at=at,
                severity=update.severity,
                reason=update.reason,
            )
        case Exempted():
            return TicketExempted(ticket_id=update.ticket_id, at=at, reason=update.reason)
        case Resolved():
            return TicketResolved(ticket_id=update.ticket_id, at=at)
        case Acknowledged():
            return EscalationAcknowledged(ticket_id=update.ticket_id, at=at, by=update.by)


def normalize_helpdesk(
    update: Update,
    correlation_id: str,
    now: datetime,
    max_skew: timedelta = DEFAULT_MAX_SKEW,
) -> list[CloudEvent]:
    """The cause is the update's type and reported instant: the same update twice is one
    event. An `at` beyond `now + max_skew` becomes `now` (see the module docstring)."""
    at, note = bound_future(update.at, now, max_skew)
    if note is not None:
        warn_clamped(f"{update.type}.at", update.ticket_id, update.at, now, max_skew)
    return [
        make_event(
            _data(update, at),
            service="intake",
            subject=update.ticket_id,
            cause=f"{update.type}:{update.at.astimezone(UTC).isoformat()}",
            correlation_id=correlation_id,
            now=now,
        )
    ]
