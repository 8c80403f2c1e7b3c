"""The what-if document as terminal tables (rich). Every value from the recording (ticket
ids, person ids, rule names) goes through `literal`: it is shown, never parsed as markup."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from services.operator.literal import literal
from services.operator.whatif_report import COUNTS


def _delta(cur: int, new: int) -> Text:
    if cur == new:
        return Text("=", style="dim")
    return Text(f"{new - cur:+d}", style="red" if new > cur else "green")


def metric_table(metric: str, rows: dict[str, dict[str, int]]) -> Table:
    table = Table(title=Text(f"metric {metric}"), title_justify="left")
    for name in ("", "current", "proposed", "change"):
        table.add_column(name, justify="left" if not name else "right")
    for name in COUNTS:
        cur, new = rows[name]["current"], rows[name]["proposed"]
        table.add_row(name.replace("_", " "), str(cur), str(new), _delta(cur, new))
    return table


def changed_table(changed: list[dict[str, Any]]) -> RenderableType:
    if not changed:
        return Text("No ticket's outcome changes.")
    table = Table(title=Text(f"{len(changed)} ticket(s) whose outcome changes"))
    for name in ("ticket", "metric", "current", "proposed", "due (current -> proposed)"):
        table.add_column(name)
    for row in changed:
        cur, new = row["current"] or {}, row["proposed"] or {}
        due = f"{cur.get('due_at', '-')} -> {new.get('due_at', '-')}"
        table.add_row(
            literal(row["ticket_id"]),
            literal(row["metric"]),
            literal(cur.get("outcome", "no clock")),
            literal(new.get("outcome", "no clock")),
            literal(due),
        )
    return table


def pages_table(per_person: dict[str, dict[str, dict[str, int]]]) -> RenderableType:
    if not per_person:
        return Text("Nobody is paged under either file.")
    title = Text("pages per person per day (UTC)")
    table = Table(title=title, caption="current -> proposed", min_width=len(title) + 4)
    table.add_column("person")
    days = sorted({d for per_day in per_person.values() for d in per_day})
    for day in days:
        table.add_column(day, justify="right")
    for person, per_day in per_person.items():
        cells = []
        for day in days:
            cell = per_day.get(day, {"current": 0, "proposed": 0})
            cells.append(Text(f"{cell['current']} -> {cell['proposed']}"))
        table.add_row(literal(person), *cells)
    return table


def _side(files: dict[str, str | None]) -> str:
    return f"policy {files.get('policy') or 'packaged default'}, on-call {files.get('oncall')}"


def whatif_tables(doc: dict[str, Any]) -> RenderableType:
    window = doc["window"]
    head = Text(
        f"{window['events']} recorded event(s) from {window['source']}, "
        f"{window['first'] or '-'} to {window['until'] or '-'}\n"
        f"current:  {_side(doc['files'].get('current', {}))}\n"
        f"proposed: {_side(doc['files'].get('proposed', {}))}"
    )
    notes = []
    without = window["tickets_without_clock"]
    if without["current"] or without["proposed"]:
        counts = f"{without['current']} -> {without['proposed']}"
        notes.append(Text(f"tickets without a clock (no rule gives one): {counts}"))
    skipped = window["updates_of_tickets_opened_before"]
    if skipped:
        notes.append(Text(f"{skipped} update(s) of tickets opened before the window: not replayed"))
    metrics: list[RenderableType] = [metric_table(m, r) for m, r in doc["metrics"].items()]
    if not metrics:
        metrics = [Text("No SLA clock in the window under either policy.")]
    return Group(
        literal(head.plain, lines=True),
        *notes,
        *metrics,
        changed_table(doc["changed"]),
        pages_table(doc["pages_per_person_per_day"]),
    )
