"""The what-if document as one self-contained HTML file: tables and an inline SVG chart
of open clocks and breaches over time, drawn here. No script, no external resource;
every value from the recording is escaped (`html.escape`), as ticket text is untrusted.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from services.operator.whatif_report import COUNTS

W, H, PAD = 760, 220, 40
STYLE = {"current": ("#1f77b4", ""), "proposed": ("#d62728", "6 4")}
CSS = (
    "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;"
    "margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}.up{color:#b00}.down{color:#070}"
)


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _points(series: list[dict[str, Any]], key: str) -> list[tuple[float, int]]:
    return [(datetime.fromisoformat(p["at"]).timestamp(), int(p[key])) for p in series]


def chart(
    timeline: dict[str, list[dict[str, Any]]], key: str, title: str, until: str | None = None
) -> str:
    """A step chart of `key` (open, breaches) for both sides, in SVG, up to `until`."""
    sides = {side: _points(series, key) for side, series in timeline.items()}
    xs = [x for pts in sides.values() for x, _ in pts]
    if xs and until is not None:
        xs.append(datetime.fromisoformat(until).timestamp())
    top = max([y for pts in sides.values() for _, y in pts] + [1])
    if not xs:
        return f"<p>{_e(title)}: nothing to draw.</p>"
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1

    def sx(x: float) -> float:
        return PAD + (x - x0) / (x1 - x0) * (W - 2 * PAD)

    def sy(y: int) -> float:
        return H - PAD - y / top * (H - 2 * PAD)

    lines = []
    for side, pts in sides.items():
        steps, last = [], 0
        for x, y in pts:
            steps += [f"{sx(x):.1f},{sy(last):.1f}", f"{sx(x):.1f},{sy(y):.1f}"]
            last = y
        steps.append(f"{sx(x1):.1f},{sy(last):.1f}")
        colour, dash = STYLE.get(side, ("#555", ""))
        lines.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="2" '
            f'stroke-dasharray="{dash}" points="{" ".join(steps)}"><title>{_e(side)}</title>'
            "</polyline>"
        )
    start, end = (datetime.fromtimestamp(x, UTC).isoformat(timespec="seconds") for x in (x0, x1))
    axes = (
        f'<line x1="{PAD}" y1="{H - PAD}" x2="{W - PAD}" y2="{H - PAD}" stroke="#888"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{H - PAD}" stroke="#888"/>'
        f'<text x="{PAD}" y="{H - PAD + 16}" font-size="11">{_e(start)}</text>'
        f'<text x="{W - PAD}" y="{H - PAD + 16}" font-size="11" text-anchor="end">{_e(end)}</text>'
        f'<text x="{PAD - 6}" y="{PAD + 4}" font-size="11" text-anchor="end">{top}</text>'
        f'<text x="{PAD - 6}" y="{H - PAD}" font-size="11" text-anchor="end">0</text>'
        f'<text x="{W / 2}" y="{PAD - 12}" font-size="13" text-anchor="middle">{_e(title)}</text>'
    )
    legend = "".join(
        f'<text x="{W - PAD}" y="{PAD + 14 * i}" font-size="11" text-anchor="end" '
        f'fill="{STYLE.get(side, ("#555", ""))[0]}">{_e(side)}</text>'
        for i, side in enumerate(sides)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" role="img" '
        f'aria-label="{_e(title)}">{axes}{legend}{"".join(lines)}</svg>'
    )


def _table(head: list[str], rows: list[list[str]]) -> str:
    cells = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{cells}</tr>{body}</table>"


def _metrics(doc: dict[str, Any]) -> str:
    out = []
    for metric, rows in doc["metrics"].items():
        body = []
        for name in COUNTS:
            cur, new = rows[name]["current"], rows[name]["proposed"]
            css = "up" if new > cur else "down" if new < cur else ""
            change = f'<span class="{css}">{new - cur:+d}</span>' if css else "="
            body.append([_e(name.replace("_", " ")), _e(cur), _e(new), change])
        out.append(f"<h3>metric {_e(metric)}</h3>")
        out.append(_table(["", "current", "proposed", "change"], body))
    return "".join(out) or "<p>No SLA clock in the window under either policy.</p>"


def _changed(doc: dict[str, Any]) -> str:
    rows = []
    for row in doc["changed"]:
        cur, new = row["current"] or {}, row["proposed"] or {}
        rows.append(
            [
                _e(row["ticket_id"]),
                _e(row["metric"]),
                _e(cur.get("outcome", "no clock")),
                _e(new.get("outcome", "no clock")),
                _e(cur.get("due_at", "-")),
                _e(new.get("due_at", "-")),
            ]
        )
    head = ["ticket", "metric", "current", "proposed", "due (current)", "due (proposed)"]
    return _table(head, rows) if rows else "<p>No ticket's outcome changes.</p>"


def _pages(doc: dict[str, Any]) -> str:
    per_person = doc["pages_per_person_per_day"]
    days = sorted({d for per_day in per_person.values() for d in per_day})
    rows = []
    for person, per_day in per_person.items():
        cells = [per_day.get(d, {"current": 0, "proposed": 0}) for d in days]
        rows.append([_e(person), *(_e(f"{c['current']} -> {c['proposed']}") for c in cells)])
    return _table(["person", *days], rows) if rows else "<p>Nobody is paged.</p>"


def whatif_html(doc: dict[str, Any]) -> str:
    window, files = doc["window"], doc["files"]
    sides = "".join(
        f"<li>{_e(side)}: policy {_e(f.get('policy') or 'packaged default')}, "
        f"on-call {_e(f.get('oncall'))}</li>"
        for side, f in files.items()
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>SLA what-if</title><style>{CSS}</style></head><body>"
        f"<h1>SLA what-if</h1><p>{_e(window['events'])} recorded event(s) from "
        f"{_e(window['source'])}, {_e(window['first'] or '-')} to {_e(window['until'] or '-')}"
        f"</p><ul>{sides}</ul>"
        f"{chart(doc['timeline'], 'open', 'open clocks', window['until'])}"
        f"{chart(doc['timeline'], 'breaches', 'breaches so far', window['until'])}"
        f"<h2>Per metric</h2>{_metrics(doc)}"
        f"<h2>Tickets whose outcome changes</h2>{_changed(doc)}"
        f"<h2>Pages per person per day (UTC), current -&gt; proposed</h2>{_pages(doc)}"
        "</body></html>\n"
    )
