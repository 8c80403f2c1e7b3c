"""Two what-if runs side by side: per metric counts, changed outcomes, pages per person.

Pure: the runs in, one JSON-able document out (what `--json` prints and the table and
HTML report are drawn from, so the three never disagree).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from services.operator.whatif import Run, TicketOutcome

COUNTS = ("tickets", "warnings", "breaches", "met", "responded_late", "pages")


@dataclass(frozen=True)
class Window:
    """What was replayed: where from, how many events, their first and last time."""

    source: str
    events: int
    first: datetime | None
    last: datetime | None
    until: datetime | None


def _counts(run: Run) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (_, metric), o in run.outcomes.items():
        row = out.setdefault(metric, dict.fromkeys(COUNTS, 0))
        row["tickets"] += 1
        if o.outcome in ("met", "responded_late"):
            row[o.outcome] += 1
    for name, per_metric in (
        ("warnings", run.warnings),
        ("breaches", run.breaches),
        ("pages", run.page_metrics),
    ):
        for metric, n in per_metric.items():
            out.setdefault(metric, dict.fromkeys(COUNTS, 0))[name] = n
    return out


def _metrics(current: Run, proposed: Run) -> dict[str, dict[str, dict[str, int]]]:
    cur, new = _counts(current), _counts(proposed)
    zero = dict.fromkeys(COUNTS, 0)
    return {
        metric: {
            name: {"current": cur.get(metric, zero)[name], "proposed": new.get(metric, zero)[name]}
            for name in COUNTS
        }
        for metric in sorted(set(cur) | set(new))
    }


def _side(o: TicketOutcome | None) -> dict[str, Any] | None:
    if o is None:
        return None
    return {"outcome": o.outcome, "rule": o.rule, "due_at": o.due_at.isoformat()}


def _changed(current: Run, proposed: Run) -> list[dict[str, Any]]:
    """Tickets whose outcome differs (a clock under one policy and none under the
    other counts: its outcome is `no clock`)."""
    rows = []
    for key in sorted(set(current.outcomes) | set(proposed.outcomes)):
        cur, new = current.outcomes.get(key), proposed.outcomes.get(key)
        before = cur.outcome if cur else "no clock"
        after = new.outcome if new else "no clock"
        if before != after:
            rows.append(
                {
                    "ticket_id": key[0],
                    "metric": key[1],
                    "current": _side(cur),
                    "proposed": _side(new),
                    "change": f"{before} -> {after}",
                }
            )
    return rows


def _pages_per_day(current: Run, proposed: Run) -> dict[str, dict[str, dict[str, int]]]:
    """person -> UTC day -> {current, proposed}."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for side, run in (("current", current), ("proposed", proposed)):
        for page in run.pages:
            days = out.setdefault(page.person, {})
            cell = days.setdefault(page.day.isoformat(), {"current": 0, "proposed": 0})
            cell[side] += 1
    return {p: dict(sorted(days.items())) for p, days in sorted(out.items())}


def _timeline(run: Run) -> list[dict[str, Any]]:
    return [{"at": at.isoformat(), "open": n, "breaches": b} for at, n, b in run.timeline]


def _when(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def compare(
    current: Run,
    proposed: Run,
    window: Window,
    files: dict[str, dict[str, str | None]],
) -> dict[str, Any]:
    """The what-if document. `files` names the policy and on-call files of each side."""
    return {
        "window": {
            "source": window.source,
            "events": window.events,
            "first": _when(window.first),
            "last": _when(window.last),
            "until": _when(window.until),
            "tickets_without_clock": {
                "current": current.without_clock,
                "proposed": proposed.without_clock,
            },
            "updates_of_tickets_opened_before": current.before_window,
        },
        "files": files,
        "metrics": _metrics(current, proposed),
        "changed": _changed(current, proposed),
        "pages_per_person_per_day": _pages_per_day(current, proposed),
        "timeline": {"current": _timeline(current), "proposed": _timeline(proposed)},
    }
