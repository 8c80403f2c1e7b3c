"""What the notifier remembers per ticket (`TicketNotes`) and how each event updates it.

The notes are small and JSON-serialisable (the edge keeps one row per ticket): the facts a
message needs from `ticket.opened` (a summary, never the whole request), the SLA clock
from `sla.*`, whether on-call acknowledged it, whether it is closed, and which pages
were triggered (so an acknowledgement or resolution reaches exactly those). Updating
is a merge: applying the same event twice gives the same notes.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from schemas.events import (
    EscalationAcknowledged,
    EventData,
    SlaBreached,
    SlaMet,
    SlaScheduled,
    SlaWarning,
    TicketExempted,
    TicketOpened,
    TicketReclassified,
    TicketResolved,
)
from schemas.inbound import Severity, TicketId
from schemas.ticket import Channel, Submitter, Ticket, TriageHint

if TYPE_CHECKING:
    from services.notifier.decisions import Notification

EXCERPT_LINES = 8
EXCERPT_CHARS = 800
Closed = Literal["met", "responded_late", "resolved", "exempted"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TicketSummary(_Model):
    """The parts of a ticket a message shows."""

    account_name: str | None
    portal_id: int | None
    account_timezone: str | None
    channel: Channel
    submitter: Submitter
    subject: str
    excerpt: str
    triage_hints: tuple[TriageHint, ...] = ()
    created_at: AwareDatetime


class Page(_Model):
    """A page that was triggered: the reason, the level and the person it went to."""

    reason: str
    level: int
    person: str


class TicketNotes(_Model):
    ticket_id: TicketId
    severity: Severity | None = None
    premium: bool | None = None
    guaranteed: bool | None = None
    policy_rule: str | None = None
    started_at: AwareDatetime | None = None
    due_at: AwareDatetime | None = None
    acknowledged: bool = False
    acknowledged_by: str | None = None
    acknowledged_at: AwareDatetime | None = None
    closed: Closed | None = None
    # The due instants of the other metrics' clocks (next_reply, periodic_update,
    # resolution), as their last sla event said; the fields above are first_response's.
    metric_due: dict[str, AwareDatetime] = {}
    pages: tuple[Page, ...] = ()
    summary: TicketSummary | None = None

    @property
    def paged_keys(self) -> tuple[str, ...]:
        """The ledger keys of the paging webhook triggers."""
        return tuple(
            f"{self.ticket_id}:{p.reason}:{p.level}:{p.person}:paging_webhook" for p in self.pages
        )


def excerpt(text: str, lines: int = EXCERPT_LINES, chars: int = EXCERPT_CHARS) -> str:
    """The first non-blank-led `lines` lines of `text`, at most `chars` characters ('…' if cut)."""
    all_lines = text.strip().splitlines()
    kept = "\n".join(line.rstrip() for line in all_lines[:lines])
    cut = len(all_lines) > lines
    if len(kept) > chars:
        kept, cut = kept[: chars - 1].rstrip(), True
    return kept + "…" if cut else kept


def summarize(ticket: Ticket) -> TicketSummary:
    return TicketSummary(
        account_name=ticket.account_name,
        portal_id=ticket.portal_id,
        account_timezone=ticket.timezone,
        channel=ticket.channel,
        submitter=ticket.submitter,
        subject=ticket.subject,
        excerpt=excerpt(ticket.text),
        triage_hints=tuple(ticket.triage_hints),
        created_at=ticket.created_at,
    )


def _ticket_id(data: EventData) -> str:
    if isinstance(data, TicketOpened):
        return data.ticket.ticket_id
    ticket_id = getattr(data, "ticket_id", None)
    if not isinstance(ticket_id, str):
        raise ValueError(f"{type(data).__name__} carries no ticket id")
    return ticket_id


def note_event(notes: TicketNotes | None, data: EventData) -> TicketNotes:
    """`notes` updated with what `data` says (new notes when None). Deadlines come from
    sla_timer's `sla.*` events: the notifier never evaluates the SLA policy itself."""
    ticket_id = _ticket_id(data)
    if notes is None:
        notes = TicketNotes(ticket_id=ticket_id)
    elif notes.ticket_id != ticket_id:
        raise ValueError(f"notes of {notes.ticket_id} given for an event of {ticket_id}")
    match data:
        case TicketOpened(ticket=ticket):
            update: dict[str, object] = {"summary": summarize(ticket), "premium": ticket.premium}
            if notes.severity is None:
                update["severity"] = ticket.severity
            return notes.model_copy(update=update)
        case SlaScheduled() | SlaWarning() | SlaBreached() | SlaMet() if (
            data.metric != "first_response"
        ):
            # The severity too: a reclassification after the first response moves only
            # the other metrics' clocks, and their messages must say the new one.
            due = {**notes.metric_due, data.metric: data.due_at}
            return notes.model_copy(update={"metric_due": due, "severity": data.severity})
        case SlaScheduled() | SlaWarning() | SlaBreached() | SlaMet():
            update = {
                "severity": data.severity,
                "guaranteed": data.guaranteed,
                "policy_rule": data.policy_rule,
                "started_at": data.started_at,
                "due_at": data.due_at,
            }
            if isinstance(data, SlaMet) and notes.closed is None:
                update["closed"] = data.outcome
            return notes.model_copy(update=update)
        case TicketReclassified(severity=severity):
            return notes.model_copy(update={"severity": severity})
        case TicketExempted():
            # After a first response met the ticket can still be exempted: then closed.
            closed = notes.closed if notes.closed == "resolved" else "exempted"
            return notes.model_copy(update={"closed": closed})
        case TicketResolved():
            return notes.model_copy(update={"closed": "resolved"})
        case EscalationAcknowledged(at=at, by=by):
            if notes.acknowledged:
                return notes
            return notes.model_copy(
                update={"acknowledged": True, "acknowledged_by": by, "acknowledged_at": at}
            )
    return notes


def record_pages(notes: TicketNotes, notifications: Iterable[Notification]) -> TicketNotes:
    """`notes` with the paging webhook triggers among `notifications` remembered."""
    pages = list(notes.pages)
    for n in notifications:
        if n.ticket_id != notes.ticket_id or n.channel != "paging_webhook":
            continue
        page = Page(reason=n.reason, level=n.level, person=n.person)
        if n.action == "trigger" and page not in pages:
            pages.append(page)
    return (
        notes.model_copy(update={"pages": tuple(pages)}) if len(pages) > len(notes.pages) else notes
    )
