"""Notification messages per channel (pure; `now` is passed in, nothing is sent).

Every message names the ticket, account, severity, channel, submitter and role, the
subject and the first lines of the request, the triage hints, the deadline in the
recipient's time zone with the time left (or how late), and the ticket link. Ticket text
is user text: HTML-escaped in HTML, `&`/`<`/`>`-escaped in Slack mrkdwn (so it cannot
mention `<!channel>` or forge links), and one-lined in the email subject (no CR/LF, so
it cannot add headers) and in PagerDuty's summary. The notifier trusts no event: every
message leaves without bidi, zero-width or control characters (services.common.text),
whatever the ticket's text, names or ids carried.
"""

from __future__ import annotations

import functools
import html
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any, ParamSpec, TypeVar, cast

from services.common.text import clean_text, strip_controls
from services.notifier.decisions import Notification, reason_word
from services.notifier.facts import Facts, one_line
from services.notifier.facts import message_facts as _message_facts
from services.notifier.notes import TicketNotes
from services.notifier.oncall_model import OnCall

__all__ = [
    "EmailContent",
    "message_facts",
    "one_line",
    "pagerduty_severity",
    "render_chat",
    "render_console",
    "render_coverage",
    "render_digest",
    "render_email",
    "render_generic",
    "render_html",
    "render_pagerduty",
    "render_text",
    "slack_escape",
]

SOURCE = "premium-support"
DIGEST_MAX = 40  # tickets listed in one digest message (Slack allows 50 blocks)
_SECTION_MAX = 2900  # Slack section text limit is 3000


@dataclass(frozen=True)
class EmailContent:
    subject: str
    text: str
    html: str


P = ParamSpec("P")
R = TypeVar("R")


def _cleaned(render: Callable[P, R]) -> Callable[P, R]:
    """`render` whose output (text, dicts, EmailContent) has every control removed."""

    @functools.wraps(render)
    def clean(*args: P.args, **kwargs: P.kwargs) -> R:
        return cast(R, strip_controls(render(*args, **kwargs)))

    return clean


def message_facts(n: Notification, notes: TicketNotes, oncall: OnCall, now: datetime) -> Facts:
    """The facts of `n`, cleaned before any layout measures or cuts them: the excerpt
    keeps its lines (any line end becomes a line feed), every control goes."""
    f = _message_facts(n, notes, oncall, now)
    return cast(Facts, strip_controls(replace(f, excerpt=clean_text(f.excerpt))))


def slack_escape(text: str) -> str:
    """Escape Slack mrkdwn control characters; user text then cannot mention or link."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _deadline_line(f: Facts) -> str:
    return f"{f.deadline}, {f.time_left}" if f.time_left else f.deadline


ACK_LABEL = "Acknowledge"


def _rows(f: Facts, ack_url: str | None = None) -> list[tuple[str, str]]:
    rows = [
        ("Ticket", f.ticket_id),
        ("Account", f.account),
        ("Severity", f.severity),
        ("Channel", f.channel),
        ("Submitter", f"{f.submitter} ({f.role})"),
        ("Subject", f.subject),
        ("Deadline", _deadline_line(f)),
    ]
    if f.acknowledged_by:
        rows.append(("Acknowledged by", f.acknowledged_by))
    if f.link:
        rows.append(("Link", f.link))
    if ack_url:  # the ack gateway's signed link (services.common.ack_token)
        rows.append((ACK_LABEL, ack_url))
    return rows


@_cleaned
def render_text(f: Facts, ack_url: str | None = None) -> str:
    """The plain-text message (email text part, console, chat fallback text)."""
    lines = [f.headline, ""]
    lines += [f"{label + ':':<17}{value}" for label, value in _rows(f, ack_url)]
    if f.hints:
        lines += ["", "Triage hints:", *(f"  - {h}" for h in f.hints)]
    if f.excerpt:
        lines += ["", "Request (first lines):", *(f"  > {ln}" for ln in f.excerpt.splitlines())]
    return "\n".join(lines) + "\n"


def _cell(label: str, value: str) -> str:
    e = html.escape
    if label == ACK_LABEL:
        return f'<a href="{e(value)}">Acknowledge this page</a>'
    return f'<a href="{e(value)}">{e(value)}</a>' if label == "Link" else e(value)


@_cleaned
def render_html(f: Facts, ack_url: str | None = None) -> str:
    """The HTML message; every value is escaped."""
    e = html.escape
    cells = "".join(
        f'<tr><th align="left">{e(label)}</th><td>{_cell(label, value)}</td></tr>'
        for label, value in _rows(f, ack_url)
    )
    parts = [f"<h2>{e(f.headline)}</h2>", f"<table>{cells}</table>"]
    if f.hints:
        parts.append("<h3>Triage hints</h3><ul>" + "".join(f"<li>{e(h)}</li>" for h in f.hints))
        parts[-1] += "</ul>"
    if f.excerpt:
        body = "<br>".join(e(ln) for ln in f.excerpt.splitlines())
        parts.append(f"<h3>Request (first lines)</h3><blockquote>{body}</blockquote>")
    return (
        '<!doctype html><html><body style="font-family:sans-serif">'
        + "".join(parts)
        + ("</body></html>\n")
    )


@_cleaned
def render_email(
    n: Notification, notes: TicketNotes, oncall: OnCall, now: datetime, ack_url: str | None = None
) -> EmailContent:
    f = message_facts(n, notes, oncall, now)
    subject = one_line(f"[Premium Support] {f.headline}: {f.ticket_id} {f.account} - {f.subject}")
    return EmailContent(subject=subject, text=render_text(f, ack_url), html=render_html(f, ack_url))


def _mrkdwn_fields(f: Facts) -> list[dict[str, str]]:
    fields = []
    for label, value in _rows(f):
        if label == "Link":
            continue
        text = f"*{label}*\n{slack_escape(value)}"
        fields.append({"type": "mrkdwn", "text": text[:1990]})
    return fields[:10]


@_cleaned
def render_chat(
    n: Notification, notes: TicketNotes, oncall: OnCall, now: datetime, ack_url: str | None = None
) -> dict[str, Any]:
    """A Slack-compatible incoming-webhook body: `text` (fallback) plus `blocks`."""
    f = message_facts(n, notes, oncall, now)
    blocks: list[dict[str, Any]] = [
        {
            "type": "header",
            "text": {"type": "plain_text", "text": one_line(f"{f.headline}: {f.ticket_id}", 150)},
        },
        {"type": "section", "fields": _mrkdwn_fields(f)},
    ]
    if f.hints:
        hints = "\n".join(f"• {slack_escape(h)}" for h in f.hints)
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*Triage hints*\n{hints}"[:_SECTION_MAX]},
            }
        )
    if f.excerpt:
        quoted = "\n".join(f"> {slack_escape(ln)}" for ln in f.excerpt.splitlines())
        blocks.append(
            {"type": "section", "text": {"type": "mrkdwn", "text": quoted[:_SECTION_MAX]}}
        )
    if f.link:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"<{f.link}|Open {f.ticket_id}>"},
            }
        )
    if ack_url:  # our own URL: base64url and `%`, nothing mrkdwn would read as markup
        ack = {"type": "mrkdwn", "text": f"<{ack_url}|Acknowledge this page>"}
        blocks.append({"type": "section", "text": ack})
    fallback = slack_escape(one_line(f"{f.headline}: {f.ticket_id} {f.account} - {f.subject}", 300))
    return {"text": fallback, "blocks": blocks}


def pagerduty_severity(n: Notification, notes: TicketNotes) -> str:
    base = reason_word(n.reason)
    if base in ("opened", "breached") and notes.severity == "business_critical":
        return "critical"
    if base == "breached":
        return "error"
    return "warning" if base in ("warning", "missed") else "info"


@_cleaned
def render_pagerduty(
    n: Notification, notes: TicketNotes, oncall: OnCall, now: datetime
) -> dict[str, Any]:
    """A PagerDuty Events API v2 body; acknowledge and resolve carry only the incident key."""
    person = oncall.person(n.person)
    if n.channel != "paging_webhook" or person is None or person.paging_webhook is None:
        raise ValueError(f"{n.notification_key} is not for a paging webhook of a known person")
    body: dict[str, Any] = {
        "routing_key": person.paging_webhook.routing_key,
        "event_action": n.action if n.action != "notify" else "trigger",
        "dedup_key": n.dedup_key or f"{n.ticket_id}:{n.reason}",
    }
    if body["event_action"] != "trigger":
        return body
    f = message_facts(n, notes, oncall, now)
    details = {k: v for k, v in asdict(f).items() if k not in ("headline", "recipient")}
    details["hints"] = list(f.hints)
    body["payload"] = {
        "summary": one_line(f"{f.headline}: {f.ticket_id} {f.account} - {f.subject}", 1024),
        "severity": pagerduty_severity(n, notes),
        "source": SOURCE,
        "timestamp": now.isoformat(),
        "component": f.account,
        "group": f.channel,
        "class": n.reason,
        "custom_details": details,
    }
    body["client"] = "Premium Support"
    if f.link:
        body["client_url"] = f.link
        body["links"] = [{"href": f.link, "text": f"Ticket {f.ticket_id}"}]
    return body


@_cleaned
def render_generic(
    n: Notification, notes: TicketNotes, oncall: OnCall, now: datetime, ack_url: str | None = None
) -> dict[str, Any]:
    """The generic webhook's JSON body (the edge signs the serialised bytes)."""
    f = message_facts(n, notes, oncall, now)
    notification = n.model_dump(mode="json") | {"notification_key": n.notification_key}
    ticket = asdict(f) | {"hints": list(f.hints)}
    body = {
        "notification": notification,
        "ticket": ticket,
        "text": render_text(f, ack_url),
        "sent_at": now.isoformat(),
    }
    return body | ({"acknowledge_url": ack_url} if ack_url else {})


@_cleaned
def render_console(
    n: Notification, notes: TicketNotes, oncall: OnCall, now: datetime, ack_url: str | None = None
) -> str:
    f = message_facts(n, notes, oncall, now)
    head = f"[{n.action} -> {f.recipient} via {n.channel}, level {n.level}]"
    return f"{head}\n{render_text(f, ack_url)}"


@_cleaned
def render_digest(
    entries: Sequence[tuple[Notification, TicketNotes]], oncall: OnCall, now: datetime
) -> dict[str, Any]:
    """One team-channel message (Slack-compatible) for a batch of team digest notices."""
    count = len(entries)
    title = f"Premium Support: {count} notice{'s' if count != 1 else ''}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title}}
    ]
    lines = [title]
    for n, notes in entries[:DIGEST_MAX]:
        f = message_facts(n, notes, oncall, now)
        ticket = f"<{f.link}|{f.ticket_id}>" if f.link else f.ticket_id
        text = (
            f"*{slack_escape(f.headline)}* · {ticket} · {slack_escape(f.account)} · "
            f"{slack_escape(f.severity)} · {slack_escape(f.channel)}\n"
            f"{slack_escape(f.subject)}\nDeadline {slack_escape(_deadline_line(f))}"
        )
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text[:_SECTION_MAX]}})
        lines.append(f"- {f.headline}: {f.ticket_id} {f.account} - {f.subject} ({f.time_left})")
    if count > DIGEST_MAX:
        more = f"…and {count - DIGEST_MAX} more"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": more}]})
        lines.append(more)
    return {"text": slack_escape("\n".join(lines)), "blocks": blocks}


@_cleaned
def render_coverage(gaps: Sequence[tuple[datetime, datetime]], oncall: OnCall) -> dict[str, Any]:
    """The team-channel warning for spans with nobody on call at level 1 (team's zone)."""
    zone = oncall.team_channel.zone if oncall.team_channel else None
    title = f"Nobody on call at level 1 in {len(gaps)} span{'s' if len(gaps) != 1 else ''} ahead"
    lines = [
        f"- {a.astimezone(zone):%a %d %b %H:%M} to {b.astimezone(zone):%a %d %b %H:%M %Z}"
        for a, b in gaps[:DIGEST_MAX]
    ]
    if len(gaps) > DIGEST_MAX:
        lines.append(f"…and {len(gaps) - DIGEST_MAX} more")
    lines.append("Fix the on-call file (`premium-support oncall check` lists them).")
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": title}},
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)[:_SECTION_MAX]}},
    ]
    return {"text": "\n".join([title, *lines]), "blocks": blocks}
