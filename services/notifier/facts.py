"""The facts a notification message states, as safe plain strings (pure; `now` passed in).

`message_facts` gathers them once; `services.notifier.render` lays them out per channel
and escapes them for it. Everything from the ticket is user text: here it is only made
single-line where it goes into a one-line field (subjects, headers, summaries).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from services.notifier.decisions import TEAM, Notification, reason_word
from services.notifier.notes import TicketNotes
from services.notifier.oncall_model import OnCall

SUBJECT_MAX = 200
_LINE_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]+")
_SPACES = re.compile(r"\s+")

_HEADLINES = {
    "opened": "Business-critical ticket opened",
    "warning": "Reminder: first response due soon",
    "breached": "SLA breached",
    "missed": "Response target missed",
    "acknowledged": "Acknowledged",
    "resolved": "Resolved",
    "undelivered": "Could not reach anyone on call",
}


def one_line(text: str, limit: int = SUBJECT_MAX) -> str:
    """`text` without CR, LF or any other control character, spaces collapsed, at most
    `limit` characters: safe in a mail header or a one-line summary."""
    flat = _SPACES.sub(" ", _LINE_BREAKS.sub(" ", text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def span_text(delta: timedelta) -> str:
    """`1 h 5 min`, `2 d 3 h`, `less than a minute` (the absolute value of `delta`)."""
    seconds = abs(int(delta.total_seconds()))
    if seconds < 60:
        return "less than a minute"
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    parts = [(days, "d"), (hours, "h"), (minutes, "min")]
    shown = [f"{n} {unit}" for n, unit in parts if n]
    return " ".join(shown[:2])


@dataclass(frozen=True)
class Facts:
    headline: str
    ticket_id: str
    reason: str
    severity: str
    account: str
    channel: str
    submitter: str
    role: str
    subject: str
    excerpt: str
    hints: tuple[str, ...]
    deadline: str
    deadline_iso: str | None
    time_left: str
    late: bool
    link: str | None
    recipient: str
    timezone: str
    acknowledged_by: str | None


def recipient_of(n: Notification, oncall: OnCall) -> tuple[str, ZoneInfo]:
    """The recipient's display name and time zone (the team channel's for `team`)."""
    if n.person == TEAM:
        team = oncall.team_channel
        return (team.name, team.zone) if team else ("team", ZoneInfo("UTC"))
    person = oncall.person(n.person)
    if person is None:
        return n.person, ZoneInfo("UTC")
    return person.name, person.zone


_METRIC_HEADLINES = {
    "warning": "Reminder: {metric} due soon",
    "breached": "SLA breached: {metric}",
    "missed": "{Metric} target missed",
}
_METRIC_NAMES = {"next_reply": "next reply", "periodic_update": "periodic update"}


def metric_of(reason: str) -> str | None:
    """`next_reply` of `missed_next_reply_2`, `resolution` of `breached_resolution`;
    None for first_response's reasons (no metric in them)."""
    base = reason.split(".")[0]
    if "_" not in base:
        return None
    return base.split("_", 1)[1].rstrip("0123456789").rstrip("_")


def headline_of(n: Notification, notes: TicketNotes) -> str:
    base = reason_word(n.reason)
    if base == "opened" and notes.severity != "business_critical":
        return "Ticket opened"
    text = _HEADLINES.get(base, base.replace("_", " ").capitalize())
    metric = metric_of(n.reason)
    if metric is not None and base in _METRIC_HEADLINES:
        name = _METRIC_NAMES.get(metric, metric)
        text = _METRIC_HEADLINES[base].format(metric=name, Metric=name.capitalize())
    if n.person == TEAM and n.level > 0 and base != "undelivered":
        text += f" (nobody on call at level {n.level})"
    return text


def link_of(notes: TicketNotes, oncall: OnCall) -> str | None:
    if oncall.link_template is None:
        return None
    portal = notes.summary.portal_id if notes.summary else None
    return oncall.link_template.format(ticket_id=notes.ticket_id, portal_id=portal or "")


def _deadline(
    notes: TicketNotes, zone: ZoneInfo, now: datetime, metric: str | None
) -> tuple[str, str, bool]:
    due = notes.due_at if metric is None else notes.metric_due.get(metric)
    if due is None:
        return "no deadline known", "", False
    local = due.astimezone(zone)
    when = f"{local:%a %d %b %Y %H:%M} {local.tzname()} ({zone.key})"
    left = due - now
    if notes.closed is not None and (metric is None or notes.closed in ("resolved", "exempted")):
        return when, f"clock stopped ({notes.closed.replace('_', ' ')})", False
    if left > timedelta(0):
        return when, f"{span_text(left)} left", False
    return when, f"{span_text(left)} late", True


def _submitter(notes: TicketNotes) -> tuple[str, str]:
    if notes.summary is None:
        return "unknown", "unknown"
    s = notes.summary.submitter
    who = s.name or s.user_id or "unknown"
    contact = s.email or s.phone
    if contact and contact != who:
        who = f"{who} <{contact}>" if s.name or s.user_id else contact
    return who, s.role.replace("_", " ")


def message_facts(n: Notification, notes: TicketNotes, oncall: OnCall, now: datetime) -> Facts:
    """The facts of `n` about the ticket in `notes`, with times in the recipient's zone."""
    if n.ticket_id != notes.ticket_id:
        raise ValueError(f"notes of {notes.ticket_id} given for a notification of {n.ticket_id}")
    recipient, zone = recipient_of(n, oncall)
    when, left, late = _deadline(notes, zone, now, metric_of(n.reason))
    summary = notes.summary
    who, role = _submitter(notes)
    account = "unknown account"
    if summary is not None and (summary.account_name or summary.portal_id is not None):
        name = summary.account_name or "portal"
        account = f"{name} (portal {summary.portal_id})" if summary.portal_id else name
    subject = summary.subject if summary else ""
    excerpt = summary.excerpt if summary else ""
    if not subject.strip():
        subject = excerpt.strip().splitlines()[0] if excerpt.strip() else "(no subject)"
    hints = tuple(
        f"{h.signal} (points to {h.points_to.replace('_', ' ')}): " + ", ".join(h.phrases)
        for h in (summary.triage_hints if summary else ())
    )
    return Facts(
        headline=headline_of(n, notes),
        ticket_id=n.ticket_id,
        reason=n.reason,
        severity=(notes.severity or "unknown").replace("_", " "),
        account=one_line(account),
        channel=summary.channel if summary else "unknown",
        submitter=one_line(who),
        role=role,
        subject=one_line(subject),
        excerpt=excerpt,
        hints=hints,
        deadline=when,
        deadline_iso=notes.due_at.isoformat() if notes.due_at else None,
        time_left=left,
        late=late,
        link=link_of(notes, oncall),
        recipient=recipient,
        timezone=zone.key,
        acknowledged_by=notes.acknowledged_by,
    )
