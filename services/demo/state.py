"""What the demo has seen so far: tickets and their clocks, escalations, dead letters,
and which expected outcomes happened when. Fed one `Seen` at a time; no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from services.demo.pipeline import Seen
from services.demo.scenario import EventMatch, Expect, Scenario


def message_id(step_id: str) -> str:
    """The AMQP message id a step is published with; intake makes it the correlation id."""
    return f"demo:{step_id}"


@dataclass
class TicketRow:
    ticket_id: str
    step: str | None
    channel: str
    role: str
    contact: str
    severity: str
    account: str
    rule: str | None = None
    guaranteed: bool | None = None
    due_at: datetime | None = None
    state: str = "open"  # open, no clock, warned, breached, met, met late
    acknowledged_by: str | None = None


@dataclass
class Outcome:
    expect: Expect
    at: float | None = None  # seconds since the start when it happened


@dataclass
class DemoState:
    scenario: Scenario
    tickets: dict[str, TicketRow] = field(default_factory=dict)
    escalations: list[Seen] = field(default_factory=list)
    dead_letters: list[Seen] = field(default_factory=list)
    step_tickets: dict[str, str] = field(default_factory=dict)
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.outcomes = [Outcome(e) for e in self.scenario.expect]

    @property
    def done(self) -> bool:
        return all(o.at is not None for o in self.outcomes)

    def step_of(self, ticket_id: str | None) -> str | None:
        return next((s for s, t in self.step_tickets.items() if t == ticket_id), None)

    def observe(self, seen: Seen) -> None:
        if seen.kind.startswith(("ticket.opened", "ticket.updated")) and seen.correlation:
            step = seen.correlation.removeprefix("demo:")
            if seen.correlation != step and seen.subject:
                self.step_tickets.setdefault(step, seen.subject)
        self._update(seen)
        for outcome in self.outcomes:
            if outcome.at is None and self.matches(outcome.expect, seen):
                outcome.at = seen.at

    def matches(self, match: EventMatch, seen: Seen) -> bool:
        if seen.kind != match.event and not seen.kind.startswith(match.event + "."):
            return False
        if match.step is not None:
            if seen.kind.startswith("dead_letter"):
                if seen.correlation != message_id(match.step):
                    return False
            elif seen.subject is None or seen.subject != self.step_tickets.get(match.step):
                return False
        wanted = {"reason": match.reason, "level": match.level, "person": match.person}
        return all(v is None or seen.data.get(k) == v for k, v in wanted.items())

    def _update(self, seen: Seen) -> None:
        data, row = seen.data, self.tickets.get(seen.subject or "")
        kind = seen.kind.split(".")
        if kind[0] == "dead_letter":
            self.dead_letters.append(seen)
        elif kind[0] == "escalation" and kind[1] in ("sent", "failed"):
            self.escalations.append(seen)
        elif seen.kind.startswith("ticket.opened"):
            self._opened(data["ticket"])
        elif row is None:
            return
        elif kind[:2] == ["sla", "scheduled"]:
            row.rule, row.guaranteed = data.get("policy_rule"), data.get("guaranteed")
            row.due_at = datetime.fromisoformat(data["due_at"])
        elif kind[0] == "sla" and kind[1] in ("warning", "breached"):
            row.state = "warned" if kind[1] == "warning" else "breached"
        elif kind[:2] == ["sla", "met"]:
            row.state = "met" if data.get("outcome") == "met" else "met late"
        elif kind[:2] == ["escalation", "acknowledged"]:
            row.acknowledged_by = data.get("by")

    def _opened(self, ticket: dict[str, Any]) -> None:
        who = ticket.get("submitter") or {}
        ticket_id = ticket["ticket_id"]
        self.tickets[ticket_id] = TicketRow(
            ticket_id=ticket_id,
            step=self.step_of(ticket_id),
            channel=ticket.get("channel", "?"),
            role=who.get("role", "?"),
            contact=who.get("email") or who.get("phone") or who.get("user_id") or "",
            severity=ticket.get("severity", "?"),
            account=ticket.get("account_name") or f"portal {ticket.get('portal_id')}",
            state="open" if ticket.get("premium") else "no clock",
        )
