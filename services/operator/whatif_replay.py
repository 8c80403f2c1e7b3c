"""The one place `sla whatif` touches sla_timer's and the notifier's pure code.

The what-if replay must decide exactly as the running services do, so it calls their
pure functions (deadline math, escalation decisions) rather than copies of them. It
calls them only through this module: when their signatures change (a clock per metric,
pauses), the fix is here and the simulation stays as it is.
"""

from __future__ import annotations

import re
from datetime import datetime

from schemas.events import (
    EVENT_TYPES,
    TYPE_OF,
    EscalationAcknowledged,
    EventData,
    TicketExempted,
    TicketOpened,
    TicketPaused,
    TicketReclassified,
    TicketResolved,
    TicketResponded,
    TicketResumed,
    TicketUpdated,
)
from services.notifier.decisions import TEAM, Notification, decide
from services.notifier.notes import TicketNotes, note_event, record_pages
from services.notifier.oncall import load_oncall
from services.notifier.oncall_model import OnCall
from services.runtime.names import SERVICE_BINDINGS, owner
from services.sla_timer.clock import Clock, fire_due
from services.sla_timer.policy import Policy, load_policy
from services.sla_timer.ticket_clocks import apply, open_ticket

__all__ = [
    "TEAM",
    "Clock",
    "Notification",
    "OnCall",
    "Policy",
    "TicketNotes",
    "apply_update",
    "clock_metric",
    "fire",
    "is_input",
    "load_oncall",
    "load_policy",
    "names_a_clock",
    "next_fire",
    "notifier_reads",
    "notify",
    "open_for",
]

Fired = list[EventData]


def open_for(
    data: TicketOpened, policy: Policy, correlation_id: str
) -> tuple[list[Clock], Fired] | None:
    """The clocks (one per metric) `ticket.opened` starts under `policy`, or None."""
    clocks, emitted = open_ticket(data.ticket, policy, correlation_id)
    if not clocks:
        return None
    return list(clocks.values()), [d for _, d, _ in emitted]


def apply_update(clocks: list[Clock], data: EventData, policy: Policy) -> tuple[list[Clock], Fired]:
    """A ticket update against every clock of the ticket, as sla_timer's service applies
    it (the clocks were made under `policy`, so their calendars are in it)."""
    by_metric = {c.metric: c for c in clocks}
    new, emitted = apply(by_metric, data, policy, lambda c: policy.calendars[c.calendar])
    return list(new.values()), [d for _, d, _ in emitted]


def fire(clock: Clock, now: datetime) -> tuple[Clock, Fired]:
    """What the scheduler fires for `clock` at `now` (a simulated, punctual tick)."""
    clock, events = fire_due(clock, now)
    return clock, [d for d, _ in events]


def next_fire(clock: Clock) -> datetime | None:
    return clock.next_fire()


def clock_metric(clock: Clock | EventData) -> str:
    """The clock's metric; clocks without one measure the first response."""
    # NOTE: a field lookup, not getattr: a missing attribute of a pydantic model raises
    # inside its __getattr__, which costs more than the rest of the replay step.
    value = getattr(clock, "metric") if "metric" in type(clock).model_fields else None  # noqa: B009
    return value if isinstance(value, str) and value else "first_response"


def names_a_clock(data: EventData) -> bool:
    """Whether `data` is an sla.* event (it carries its clock's deadline)."""
    return "due_at" in type(data).model_fields


def notify(
    data: EventData, notes: TicketNotes | None, oncall: OnCall, now: datetime
) -> tuple[TicketNotes, list[Notification]]:
    """The notifier's decision for one event at `now`, and its notes afterwards (the
    service keeps them in its store; the replay keeps them in memory)."""
    notifications = decide(TYPE_OF[type(data)], data, notes, oncall, now)
    return record_pages(note_event(notes, data), notifications), notifications


def _topic(pattern: str) -> re.Pattern[str]:
    words = [{"*": r"[^.]+", "#": ".*"}.get(w, re.escape(w)) for w in pattern.split(".")]
    return re.compile(r"^" + r"\.".join(words) + r"$")


_NOTIFIER_KEYS = [
    _topic(key)
    for queue, (_, _, keys) in SERVICE_BINDINGS.items()
    if owner(queue) == "notifier"
    for key in keys
]


def notifier_reads(data: EventData) -> bool:
    """Whether the notifier's queues are bound to the routing key `data` is published
    with (their bindings, not a copy of them)."""
    _, prefix = EVENT_TYPES[TYPE_OF[type(data)]]
    if isinstance(data, TicketOpened):
        prefix = f"{prefix}.{data.ticket.severity}"
    elif prefix.startswith("sla."):
        prefix = f"{prefix}.{getattr(data, 'severity', '')}"
    return any(p.match(prefix) for p in _NOTIFIER_KEYS)


def is_input(data: EventData) -> bool:
    """The events sla_timer or the notifier consume from intake (`ticket.*`, acks)."""
    return isinstance(
        data,
        TicketOpened
        | TicketUpdated
        | TicketResponded
        | TicketReclassified
        | TicketExempted
        | TicketResolved
        | TicketPaused
        | TicketResumed
        | EscalationAcknowledged,
    )
