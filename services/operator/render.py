"""Rich tables for people; `--json` output skips these.

Every cell and title is a `Text` made by `literal`: what a dead letter or a store holds
is never read as Rich markup, and id columns are never cut (`no_wrap`, a minimum width
of the longest id), so an id can be copied from the table.
"""

from __future__ import annotations

import json

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from services.operator.dlq import DeadLetter
from services.operator.literal import literal
from services.operator.queues import QueueStats
from services.operator.status import StatusReport
from services.runtime.logging import mask_text

UNKNOWN = "-"


def _n(value: int | None) -> Text:
    return literal(UNKNOWN if value is None else value)


def _id_column(table: Table, name: str, ids: list[str]) -> None:
    """A column whose values are copied whole: never wrapped, folded or cut short."""
    longest = max((literal(i).cell_len for i in ids), default=len(name))
    table.add_column(name, no_wrap=True, min_width=max(longest, len(name)))


def _dead_letters(dead: QueueStats | None) -> Text:
    if dead is None:  # support.unrouted has no dead-letter queue
        return literal("")
    return _n(dead.depth) if dead.exists else literal("missing")


def status_tables(report: StatusReport) -> RenderableType:
    source = (
        f"source: management API ({report.source_detail})"
        if report.source == "management"
        else f"source: passive queue declares; unacked unknown ({report.source_detail})"
    )
    queues = Table(title=literal(f"queues on {report.broker} (prefix {report.prefix or 'none'!r})"))
    _id_column(queues, "queue", [row.name for row in report.queues])
    for column in ("ready", "unacked", "consumers", "dead letters"):
        queues.add_column(column, justify="right")
    for row in report.queues:
        if not row.stats.exists:
            queues.add_row(literal(row.name), literal("missing"))
            continue
        queues.add_row(
            literal(row.name),
            _n(row.stats.ready),
            _n(row.stats.unacked),
            _n(row.stats.consumers),
            _dead_letters(row.dead_letters),
        )
    return Group(queues, literal(source, style="dim"), _sla_tables(report))


def _sla_tables(report: StatusReport) -> RenderableType:
    sla = report.sla
    if sla.error:
        return literal(f"SLA store: {sla.error}", style="yellow")
    states = ", ".join(f"{state} {count}" for state, count in sla.open.items())
    header = literal(f"SLA store {sla.store}: open clocks: {states}")
    upcoming = Table(title="next deadlines")
    _id_column(upcoming, "ticket", [d.ticket_id for d in sla.next_deadlines])
    for column in ("metric", "kind", "severity", "next", "fires at", "due"):
        upcoming.add_column(column)
    for d in sla.next_deadlines:
        cells = (d.ticket_id, d.metric, d.kind, d.severity, d.fires, d.fires_at, d.due_at)
        upcoming.add_row(*map(literal, cells))
    breaches = Table(title=f"breaches in the last hour: {len(sla.breaches_last_hour)}")
    _id_column(breaches, "ticket", [b.ticket_id for b in sla.breaches_last_hour])
    for column in ("metric", "kind", "severity", "due", "breached at"):
        breaches.add_column(column)
    for b in sla.breaches_last_hour:
        row = (b.ticket_id, b.metric, b.kind, b.severity, b.due_at, b.breached_at)
        breaches.add_row(*map(literal, row))
    return Group(header, upcoming, breaches)


def dead_letter_table(queue: str, letters: list[DeadLetter], depth: int) -> RenderableType:
    table = Table(title=literal(f"{queue}: {len(letters)} of {depth} dead letter(s)"))
    _id_column(table, "id", [letter.id for letter in letters])
    for column in ("reason", "error", "service", "attempts", "last failure", "routing key"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        cells = (
            letter.id,
            letter.reason,
            # Emails and phone numbers in a list are masked, as in the logs; `show`
            # gives one letter in full to whoever asks for it.
            mask_text(letter.error),
            letter.service or UNKNOWN,
            UNKNOWN if letter.attempts is None else letter.attempts,
            letter.last_failure_at or UNKNOWN,
            letter.original_routing_key or UNKNOWN,
        )
        table.add_row(*map(literal, cells))
    return table


FACTS = (
    "id",
    "reason",
    "error",
    "service",
    "attempts",
    "first_failure_at",
    "last_failure_at",
    "original_exchange",
    "original_routing_key",
    "original_queue",
    "content_type",
    "correlation_id",
    "reads",
)


def dead_letter_detail(letter: DeadLetter) -> RenderableType:
    detail = letter.detail()
    facts = Table.grid(padding=(0, 2))
    facts.add_column(no_wrap=True)
    facts.add_column(overflow="fold")
    for key in FACTS:
        facts.add_row(literal(key), literal(detail[key]))
    headers = Table(title="headers")
    headers.add_column("header", overflow="fold")
    headers.add_column("value", overflow="fold")
    for key, value in sorted(detail["headers"].items()):
        shown = value if isinstance(value, str) else json.dumps(value)
        headers.add_row(literal(key), literal(shown))
    head = f"body ({detail['body_encoding']}, {len(letter.body)} bytes):"
    return Group(facts, headers, literal(head), literal(detail["body"], lines=True))
