"""How the demo looks: one line per thing that happened (plain output and the live log),
the live view (tickets with their deadlines counting down, escalations, expected
outcomes) and the closing summary. Pure rendering over `DemoState`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from services.demo.pipeline import Seen
from services.demo.state import DemoState, TicketRow
from services.runtime.logging import mask_text


def clock_text(seconds: float) -> str:
    """`0:24`, `15:12`, `2:40:05`; `2d 23h` beyond a day."""
    total = int(abs(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _ticket(state: DemoState, ticket_id: str | None) -> str:
    step = state.step_of(ticket_id)
    return f"{step} ({ticket_id})" if step else str(ticket_id)


def describe(seen: Seen, state: DemoState) -> str:
    """One line about an event or dead letter, for people."""
    d, kind, ticket = seen.data, seen.kind, _ticket(state, seen.subject)
    row = state.tickets.get(seen.subject or "")
    if kind.startswith("ticket.opened") and row is not None:
        who = f"{row.role} {mask_text(row.contact)}".strip()
        return f"ticket opened: {ticket}, {row.channel} from {who} at {row.account}, {row.severity}"
    promise = "guaranteed" if d.get("guaranteed") else "target"
    if kind.startswith("sla.scheduled"):
        return f"SLA clock started: {ticket}, {promise} ({d.get('policy_rule')}), due {d['due_at']}"
    if kind.startswith(("sla.warning", "sla.breached")):
        word = "WARNING" if kind.startswith("sla.warning") else "BREACHED"
        return f"SLA {word}: {ticket}, {promise}, due {d.get('due_at')}"
    if kind.startswith("sla.met"):
        return f"SLA met: {ticket} ({d.get('outcome')}), answered {d.get('responded_at')}"
    if kind.startswith("escalation.sent"):
        return (
            f"escalation sent: {d.get('reason')} -> level {d.get('level')} "
            f"{d.get('person')} via {d.get('channel')} for {ticket}"
        )
    if kind.startswith("escalation.failed"):
        return f"escalation FAILED: {d.get('person')} via {d.get('channel')}: {d.get('error')}"
    if kind.startswith("escalation.acknowledged"):
        return f"acknowledged: {ticket} by {d.get('by')}"
    if kind.startswith("ticket.responded"):
        return f"first response: {ticket} by {d.get('agent')}"
    if kind.startswith("dead_letter"):
        step = (seen.correlation or "").removeprefix("demo:")
        return f"dead letter in {kind.split('.')[1]} ({step}): {d.get('x-error')}"
    return f"{kind}: {ticket}"


def deadline_text(row: TicketRow, now: datetime) -> Text:
    if row.due_at is None:
        return Text("-", style="dim")
    left = (row.due_at - now).total_seconds()
    if row.state in ("met", "met late"):
        return Text(row.state, style="green" if row.state == "met" else "yellow")
    if row.state == "breached" or left < 0:
        return Text(f"BREACHED +{clock_text(left)}", style="bold red")
    style = "yellow" if row.state == "warned" else "cyan"
    return Text(f"in {clock_text(left)}", style=style)


def _table(title: str) -> Table:
    # No padding beyond the one-space column divider: the summary fits 80 columns (the
    # width rich assumes for CI logs and pipes).
    return Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, padding=0)


def _sla(row: TicketRow) -> Text:
    if row.state == "no clock":
        return Text("none", style="dim")  # not a Premium account
    if row.guaranteed is None:
        return Text("-", style="dim")
    return Text("guaranteed", style="bold") if row.guaranteed else Text("target")


def tickets_table(state: DemoState, now: datetime, title: str = "tickets") -> Table:
    table = _table(title)
    for column in ("step", "channel", "from", "severity", "SLA", "deadline", "ack"):
        table.add_column(column)
    for row in state.tickets.values():
        table.add_row(
            row.step or row.ticket_id,
            row.channel,
            row.role.replace("_", " "),
            "critical" if row.severity == "business_critical" else row.severity,
            _sla(row),
            deadline_text(row, now),
            row.acknowledged_by or "",
        )
    return table


def escalations_table(escalations: Sequence[Seen], state: DemoState) -> Table:
    table = _table("escalations")
    for column in ("t", "step", "reason", "level", "to", "via", "status"):
        table.add_column(column)
    for seen in escalations:
        d = seen.data
        ok = seen.kind.startswith("escalation.sent")
        table.add_row(
            f"+{seen.at:.1f}s",
            state.step_of(seen.subject) or str(seen.subject),
            str(d.get("reason")),
            str(d.get("level")),
            str(d.get("person")),
            str(d.get("channel")),
            Text("sent", style="green") if ok else Text("FAILED", style="bold red"),
        )
    return table


def outcomes_table(state: DemoState, final: bool = False) -> Table:
    table = _table("expected outcomes")
    table.add_column("")
    table.add_column("outcome")
    table.add_column("when")
    for outcome in state.outcomes:
        if outcome.at is not None:
            mark, when = Text("✓", style="green"), f"t+{outcome.at:.1f}s"
        elif final:
            mark, when = Text("✗", style="bold red"), "did not happen"
        else:
            mark, when = Text("…", style="dim"), "waiting"
        table.add_row(mark, outcome.expect.title, when)
    return table


def live_view(state: DemoState, elapsed: float) -> RenderableType:
    """Below the scrolling lines: what is open now, the latest escalations, the checklist."""
    now = datetime.now(UTC)
    head = Text(f"{state.scenario.title} — t+{elapsed:.0f}s", style="bold")
    return Group(
        head,
        tickets_table(state, now),
        escalations_table(state.escalations[-6:], state),
        outcomes_table(state),
    )


def summary(state: DemoState, elapsed: float, unpublished: Sequence[str]) -> RenderableType:
    now = datetime.now(UTC)
    parts: list[RenderableType] = [
        Text(f"\nSummary after {elapsed:.1f}s", style="bold"),
        tickets_table(state, now, title="tickets at the end"),
        escalations_table(state.escalations, state),
        outcomes_table(state, final=True),
    ]
    for letter in state.dead_letters:
        parts.append(Text(describe(letter, state), style="yellow"))
    if unpublished:
        parts.append(Text(f"steps never published: {', '.join(unpublished)}", style="red"))
    return Group(*parts)
