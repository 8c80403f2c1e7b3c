"""Message rendering: content, recipient time zones, escaping and header safety per channel."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import pytest

from schemas.ticket import Submitter, TriageHint
from services.notifier.decisions import Notification
from services.notifier.facts import message_facts, one_line, span_text
from services.notifier.notes import Page, TicketNotes, TicketSummary
from services.notifier.oncall import OnCall, parse_oncall
from services.notifier.render import (
    DIGEST_MAX,
    render_chat,
    render_console,
    render_coverage,
    render_digest,
    render_email,
    render_generic,
    render_pagerduty,
    slack_escape,
)

TID = "T-email-0207b44e3d661cc0"
T0 = datetime(2026, 11, 27, 9, 58, 2, tzinfo=UTC)
DUE = T0 + timedelta(minutes=30)  # 10:28:02 UTC = 11:28 CET = 05:28 EST
SCRIPT = "<script>alert('x')</script>"

ONCALL = """\
people:
  - id: kim
    name: Kim
    email: kim@support.example
    paging_webhook: {url: "https://pager.example/v2/enqueue", routing_key: RK-KIM}
    timezone: Europe/Amsterdam
  - {id: mira, name: Mira, email: mira@support.example, timezone: America/New_York}
schedules:
  primary:
    timezone: Europe/Amsterdam
    rotation: [kim]
    handoff: {weekday: mon, hour: 9}
    start: 2026-01-05
escalation:
  - {level: 1, schedules: [primary]}
  - {level: 2, people: [mira]}
team_channel: {chat_webhook: "https://chat.example/hooks/team", name: Support, timezone: Asia/Tokyo}
link_template: "https://helpdesk.example/tickets/{ticket_id}?portal={portal_id}"
"""


@pytest.fixture(scope="module")
def oncall() -> OnCall:
    return parse_oncall(ONCALL)


def notes(subject: str = "Login outage\r\nBcc: x@y", **kw: object) -> TicketNotes:
    summary = TicketSummary(
        account_name="Acme Corp",
        portal_id=4411,
        account_timezone="Europe/Amsterdam",
        channel="email",
        submitter=Submitter(
            role="super_admin", user_id="u-19", email="ana@acme.example", name="Ana <b>Ruiz</b>"
        ),
        subject=subject,
        excerpt=f"Nobody can log in since 9:50\n{SCRIPT} <!channel> & more",
        triage_hints=(
            TriageHint(signal="login_outage", points_to="business_critical", phrases=["log in"]),
        ),
        created_at=T0,
    )
    base: dict[str, object] = {
        "ticket_id": TID,
        "severity": "business_critical",
        "premium": True,
        "guaranteed": True,
        "started_at": T0,
        "due_at": DUE,
        "summary": summary,
        "pages": (Page(reason="opened", level=1, person="kim"),),
    }
    return TicketNotes.model_validate(base | kw)


def note(
    person: str = "kim", channel: str = "email", reason: str = "opened", **kw: object
) -> Notification:
    fields: dict[str, object] = {
        "ticket_id": TID,
        "reason": reason,
        "level": 1,
        "person": person,
        "channel": channel,
        "action": "notify",
    }
    return Notification.model_validate(fields | kw)


NOW = T0 + timedelta(minutes=1)


def test_email_names_everything_with_the_deadline_in_the_recipients_zone(oncall: OnCall) -> None:
    mail = render_email(note(), notes(), oncall, NOW)
    for part in (mail.text, mail.html):
        for fact in (
            TID,
            "Acme Corp (portal 4411)",
            "business critical",
            "email",
            "ana@acme.example",
            "super admin",
            "Nobody can log in since 9:50",
            "login_outage",
            "Fri 27 Nov 2026 11:28 CET (Europe/Amsterdam)",
            "29 min left",
            f"https://helpdesk.example/tickets/{TID}?portal=4411",
        ):
            assert fact in part, (fact, part)
    assert "Login outage Bcc: x@y" in mail.text  # one line, in the body
    new_york = render_email(note("mira"), notes(), oncall, NOW)
    assert "Fri 27 Nov 2026 05:28 EST (America/New_York)" in new_york.text


def test_email_late_and_stopped_clock(oncall: OnCall) -> None:
    late = render_email(note(reason="breached"), notes(), oncall, DUE + timedelta(minutes=7))
    assert "SLA breached" in late.subject
    assert "7 min late" in late.text
    met = render_email(note(), notes(closed="met"), oncall, DUE + timedelta(minutes=7))
    assert "clock stopped (met)" in met.text


def test_subject_cannot_inject_headers(oncall: OnCall) -> None:
    mail = render_email(note(), notes(), oncall, NOW)
    assert "\r" not in mail.subject and "\n" not in mail.subject
    assert mail.subject.startswith("[Premium Support] Business-critical ticket opened: " + TID)
    msg = EmailMessage()
    msg["From"] = "notifier@support.example"
    msg["To"] = "kim@support.example"
    msg["Subject"] = mail.subject
    msg.set_content(mail.text)
    msg.add_alternative(mail.html, subtype="html")
    parsed = email.message_from_bytes(msg.as_bytes(), policy=email.policy.default)
    assert parsed["Bcc"] is None
    assert parsed.get_all("Subject") == [mail.subject]


def test_unicode_line_breaks_are_flattened_too() -> None:
    assert one_line("a\u2028b\u2029c\x85d\x0be\tf\x00g") == "a b c d e f g"
    assert len(one_line("x" * 500)) == 200


def test_html_escapes_user_text(oncall: OnCall) -> None:
    mail = render_email(note(), notes(subject=SCRIPT), oncall, NOW)
    assert "<script>" not in mail.html
    assert "&lt;script&gt;" in mail.html
    assert "<b>Ruiz</b>" not in mail.html and "Ana &lt;b&gt;Ruiz&lt;/b&gt;" in mail.html
    assert SCRIPT in mail.text  # plain text is not HTML


def test_chat_blocks_escape_mrkdwn(oncall: OnCall) -> None:
    body = render_chat(note(channel="chat_webhook"), notes(subject=SCRIPT), oncall, NOW)
    raw = json.dumps(body)
    assert "<script>" not in raw and "<!channel>" not in raw
    assert "&lt;!channel&gt;" in raw
    assert body["text"].startswith("Business-critical ticket opened: " + TID)
    header = body["blocks"][0]
    assert header["type"] == "header" and len(header["text"]["text"]) <= 150
    fields = body["blocks"][1]["fields"]
    assert len(fields) <= 10
    assert any("11:28 CET" in f["text"] for f in fields)
    assert body["blocks"][-1]["text"]["text"] == (
        f"<https://helpdesk.example/tickets/{TID}?portal=4411|Open {TID}>"
    )
    assert slack_escape("a & <b>") == "a &amp; &lt;b&gt;"


def test_pagerduty_trigger(oncall: OnCall) -> None:
    n = note(channel="paging_webhook", action="trigger", dedup_key=f"{TID}:opened")
    body = render_pagerduty(n, notes(), oncall, NOW)
    assert body["routing_key"] == "RK-KIM"
    assert body["event_action"] == "trigger"
    assert body["dedup_key"] == f"{TID}:opened"
    payload = body["payload"]
    assert payload["severity"] == "critical"
    assert payload["source"] == "premium-support"
    assert "\n" not in payload["summary"] and "\r" not in payload["summary"]
    assert TID in payload["summary"] and len(payload["summary"]) <= 1024
    details = payload["custom_details"]
    assert details["ticket_id"] == TID
    assert details["deadline_iso"] == DUE.isoformat()
    assert details["time_left"] == "29 min left"
    assert body["links"][0]["href"].startswith("https://helpdesk.example/tickets/")
    json.dumps(body)


@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_pagerduty_acknowledge_and_resolve_name_the_incident(oncall: OnCall, action: str) -> None:
    word = "acknowledged" if action == "acknowledge" else "resolved"
    n = note(
        channel="paging_webhook",
        reason=f"{word}.opened",
        action=action,
        dedup_key=f"{TID}:opened",
    )
    assert render_pagerduty(n, notes(), oncall, NOW) == {
        "routing_key": "RK-KIM",
        "event_action": action,
        "dedup_key": f"{TID}:opened",
    }


def test_pagerduty_needs_a_paging_webhook(oncall: OnCall) -> None:
    with pytest.raises(ValueError, match="not for a paging webhook"):
        render_pagerduty(note(), notes(), oncall, NOW)
    with pytest.raises(ValueError, match="not for a paging webhook"):
        render_pagerduty(note("mira", "paging_webhook", action="trigger"), notes(), oncall, NOW)


def test_generic_and_console(oncall: OnCall) -> None:
    body = render_generic(note(channel="generic_webhook"), notes(), oncall, NOW)
    assert body["notification"]["notification_key"] == f"{TID}:opened:1:kim:generic_webhook"
    assert body["ticket"]["deadline"].startswith("Fri 27 Nov 2026 11:28")
    json.dumps(body)
    text = render_console(note(channel="console"), notes(), oncall, NOW)
    assert text.startswith("[notify -> Kim via console, level 1]")


def test_team_digest_in_the_team_zone(oncall: OnCall) -> None:
    team = note("team", "team_digest", reason="missed", level=0)
    body = render_digest([(team, notes()), (team, notes(subject=SCRIPT))], oncall, NOW)
    assert body["text"].startswith("Premium Support: 2 notices")
    raw = json.dumps(body)
    assert "<script>" not in raw
    assert "Response target missed" in raw
    assert "19:28 JST" in raw  # Asia/Tokyo
    many = render_digest([(team, notes())] * (DIGEST_MAX + 3), oncall, NOW)
    assert len(many["blocks"]) == DIGEST_MAX + 2
    assert "and 3 more" in many["blocks"][-1]["elements"][0]["text"]


def test_unstaffed_level_notice_says_so(oncall: OnCall) -> None:
    facts = message_facts(note("team", "team_digest", level=1), notes(), oncall, NOW)
    assert facts.headline == "Business-critical ticket opened (nobody on call at level 1)"


def test_renders_with_only_the_ticket_id_known(oncall: OnCall) -> None:
    bare = TicketNotes(ticket_id=TID)
    mail = render_email(note(reason="breached"), bare, oncall, NOW)
    assert "unknown account" in mail.text
    assert "no deadline known" in mail.text
    assert "(no subject)" in mail.subject
    with pytest.raises(ValueError, match="notes of"):
        render_email(note(), TicketNotes(ticket_id="T-chat-0123456789abcdef"), oncall, NOW)


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (timedelta(seconds=59), "less than a minute"),
        (timedelta(minutes=29, seconds=58), "29 min"),
        (timedelta(hours=1, minutes=5), "1 h 5 min"),
        (-timedelta(days=2, hours=3, minutes=4), "2 d 3 h"),
        (timedelta(hours=2), "2 h"),
    ],
)
def test_span_text(delta: timedelta, text: str) -> None:
    assert span_text(delta) == text


def test_coverage_warning_lists_the_gaps_in_the_team_zone(oncall: OnCall) -> None:
    gaps = [(datetime(2026, 11, 27, 0, tzinfo=UTC), datetime(2026, 11, 27, 9, tzinfo=UTC))]
    body = render_coverage(gaps, oncall)
    assert body["text"].startswith("Nobody on call at level 1 in 1 span ahead")
    assert "Fri 27 Nov 09:00 to Fri 27 Nov 18:00 JST" in body["text"]  # Asia/Tokyo
    assert body["blocks"][0]["text"]["text"] == "Nobody on call at level 1 in 1 span ahead"
