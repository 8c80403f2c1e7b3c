"""Rich tables for people; `--json` output skips these."""

from __future__ import annotations

import json

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from services.operator.dlq import DeadLetter
from services.operator.status import StatusReport
from services.runtime.logging import mask_text

UNKNOWN = "-"


def _n(value: int | None) -> str:
    return UNKNOWN if value is None else str(value)


def status_tables(report: StatusReport) -> RenderableType:
    source = (
        f"source: management API ({report.source_detail})"
        if report.source == "management"
        else f"source: passive queue declares; unacked unknown ({report.source_detail})"
    )
    queues = Table(title=f"queues on {report.broker} (prefix {report.prefix or 'none'!r})")
    for column in ("queue", "ready", "unacked", "consumers", "dead letters"):
        queues.add_column(column, justify="left" if column == "queue" else "right")
    for row in report.queues:
        if not row.stats.exists:
            queues.add_row(row.name, "missing", "", "", "")
            continue
        dead = row.dead_letters
        dead_text = "" if dead is None else (_n(dead.depth) if dead.exists else "missing")
        queues.add_row(
            row.name, _n(row.stats.ready), _n(row.stats.unacked), _n(row.stats.consumers), dead_text
        )
    return Group(queues, Text(source, style="dim"), _sla_tables(report))


def _sla_tables(report: StatusReport) -> RenderableType:
    sla = report.sla
    if sla.error:
        return Text(f"SLA store: {sla.error}", style="yellow")
    states = ", ".join(f"{state} {count}" for state, count in sla.open.items())
    header = Text(f"SLA store {sla.store}: open clocks: {states}")
    upcoming = Table(title="next deadlines")
    for column in ("ticket", "kind", "severity", "next", "fires at", "due"):
        upcoming.add_column(column)
    for d in sla.next_deadlines:
        upcoming.add_row(d.ticket_id, d.kind, d.severity, d.fires, d.fires_at, d.due_at)
    breaches = Table(title=f"breaches in the last hour: {len(sla.breaches_last_hour)}")
    for column in ("ticket", "kind", "severity", "due", "breached at"):
        breaches.add_column(column)
    for b in sla.breaches_last_hour:
        breaches.add_row(b.ticket_id, b.kind, b.severity, b.due_at, b.breached_at)
    return Group(header, upcoming, breaches)


def dead_letter_table(queue: str, letters: list[DeadLetter], depth: int) -> RenderableType:
    table = Table(title=f"{queue}: {len(letters)} of {depth} dead letter(s)")
    for column in ("id", "reason", "error", "service", "attempts", "last failure", "routing key"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            letter.id,
            letter.reason,
            # Emails and phone numbers in a list are masked, as in the logs; `show`
            # gives one letter in full to whoever asks for it.
            mask_text(letter.error),
            letter.service or UNKNOWN,
            _n(letter.attempts),
            letter.last_failure_at or UNKNOWN,
            letter.original_routing_key or UNKNOWN,
        )
    return table


def dead_letter_detail(letter: DeadLetter) -> RenderableType:
    detail = letter.detail()
    facts = Table.grid(padding=(0, 2))
    for key in ("id", "reason", "error", "service", "attempts", "first_failure_at"):
        facts.add_row(key, str(detail[key]))
    for key in ("last_failure_at", "original_exchange", "original_routing_key"):
        facts.add_row(key, str(detail[key]))
    for key in ("original_queue", "content_type", "correlation_id", "reads"):
        facts.add_row(key, str(detail[key]))
    headers = Table(title="headers")
    headers.add_column("header")
    headers.add_column("value", overflow="fold")
    for key, value in sorted(detail["headers"].items()):
        headers.add_row(key, json.dumps(value) if not isinstance(value, str) else value)
    body = Text(f"body ({detail['body_encoding']}, {len(letter.body)} bytes):\n{detail['body']}")
    return Group(facts, headers, body)
