"""End to end: a business-critical email from a Super Admin goes in through
support.inbound (pika, as the mail gateway and the helpdesk would publish it) and comes
out as real pages, chat messages and mails: level 1 paged at once, a reminder on chat
before the deadline, level 2 at the breach (paged, and mailed to the manager who has no
pager), and an acknowledgement that stops the reminders of its ticket. Each person gets
one notification per reason, by their first contact method for its kind."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from schemas.events import CloudEvent
from services.intake.ids import ticket_id
from services.upstream import UpstreamPublisher
from tests.e2e.conftest import BUDGET, WARN_BEFORE, OnCallDesk
from tests.integration.conftest import wait_for
from tests.support.capture import Capture

REQUEST = "Since 09:50 nobody on our team can log in. Our launch today is blocked."


def raw_email(message_id: str, created: datetime) -> bytes:
    """What the mail gateway received: plus-addressed to portal 4411, marked critical."""
    msg = EmailMessage()
    msg["From"] = "Ana Ruiz <ana@acme.example>"  # a designated Super Admin of portal 4411
    msg["To"] = "premium+4411@support.example"
    msg["Subject"] = "Nobody can log in"
    msg["Date"] = format_datetime(created)
    msg["Message-ID"] = message_id
    msg["X-Business-Critical"] = "yes"
    msg.set_content(REQUEST)
    return msg.as_bytes()


def form_email(message_id: str, created: datetime) -> bytes:
    """The in-app support form, business-critical box ticked."""
    return json.dumps(
        {
            "message_id": message_id,
            "portal_id": 4411,
            "from": "Ana Ruiz <ana@acme.example>",
            "subject": "CMS unreachable for every team",
            "text": "None of our editors can reach the CMS since this morning.",
            "html": None,
            "received_at": created.isoformat(),
            "in_reply_to": None,
            "references": [],
            "form": {"business_critical": True, "user_id": "u-19"},
        }
    ).encode()


def pages(server_requests: list, action: str) -> dict[str, dict]:  # type: ignore[type-arg]
    """dedup_key -> PagerDuty body, for the requests of one event_action."""
    bodies = [r.json() for r in list(server_requests)]
    return {b["dedup_key"]: b for b in bodies if b["event_action"] == action}


def cloud_events(events: Capture, routing_prefix: str) -> list[CloudEvent]:
    return [
        CloudEvent.model_validate(r.json())
        for r in events.received
        if r.routing_key.startswith(routing_prefix)
    ]


def test_critical_email_pages_level_1_breaches_to_level_2_and_the_ack_stops_reminders(
    pipeline: None, desk: OnCallDesk, upstream: UpstreamPublisher, events: Capture
) -> None:
    created = datetime.now(UTC).replace(microsecond=0)  # the Date header has whole seconds
    warn_at, due_at = created + BUDGET - WARN_BEFORE, created + BUDGET
    run = uuid.uuid4().hex[:8]
    a_mid, b_mid = f"<e2e-a-{run}@mail.acme.example>", f"<e2e-b-{run}@mail.acme.example>"
    a, b = ticket_id("email", a_mid), ticket_id("email", b_mid)

    # Ticket A comes from the support form, ticket B from the mail gateway (raw MIME).
    # Both are due at the same instant; A will be acknowledged, B not.
    upstream.publish("email", form_email(a_mid, created))
    upstream.publish("email", raw_email(b_mid, created), content_type="message/rfc822")

    # Level 1 (kim) is paged at once, long before anything is due.
    wait_for(
        lambda: {f"{a}:opened", f"{b}:opened"} <= set(pages(desk.kim_page.requests, "trigger")),
        timeout=(warn_at - datetime.now(UTC)).total_seconds() - 1,
    )
    trigger = pages(desk.kim_page.requests, "trigger")[f"{b}:opened"]
    assert trigger["routing_key"] == "RKIM"
    assert trigger["payload"]["severity"] == "critical"
    assert b in trigger["payload"]["summary"]
    assert trigger["payload"]["custom_details"]

    # Kim acknowledges ticket A in the helpdesk; the paging webhook gets the acknowledge.
    acked = datetime.now(UTC)
    ack = {"type": "acknowledged", "ticket_id": a, "at": acked.isoformat(), "by": "kim"}
    upstream.publish("helpdesk", json.dumps(ack).encode())
    wait_for(lambda: f"{a}:opened" in pages(desk.kim_page.requests, "acknowledge"), timeout=5)
    assert pages(desk.kim_page.requests, "acknowledge") == {
        f"{a}:opened": {
            "routing_key": "RKIM",
            "event_action": "acknowledge",
            "dedup_key": f"{a}:opened",
        }
    }
    ack_done = datetime.now(UTC)
    # The notifier has recorded the acknowledgement before A's warning could even be
    # emitted: what follows really tests that a due warning of an acked ticket is dropped.
    assert ack_done < warn_at, "the acknowledgement took too long to test anything"

    # Nobody responds: the warnings fire, then both tickets breach.
    expected = Counter(
        [
            f"{t}:{reason}:{level}:{person}:{channel}"
            for t in (a, b)
            for reason, level, person, channel in (
                ("opened", 1, "kim", "paging_webhook"),
                ("breached", 1, "kim", "paging_webhook"),
                ("breached", 2, "lars", "paging_webhook"),
                ("breached", 2, "mira", "email"),  # mira has no pager
            )
        ]
        + [f"{b}:warning:1:kim:chat_webhook"]  # B only; a reminder goes by chat first
        + [f"{a}:acknowledged.opened:1:kim:paging_webhook"]
    )
    try:
        wait_for(
            lambda: set(desk.keys()) >= set(expected),
            timeout=(due_at - datetime.now(UTC)).total_seconds() + 15,
        )
    except AssertionError:
        raise AssertionError(f"never arrived: {sorted(set(expected) - set(desk.keys()))}") from None

    # The reminder reached kim for B, on chat (and not by mail: one per reason) ...
    reminders = [r.headers["X-Notification-Key"] for r in desk.kim_chat.requests]
    assert reminders == [f"{b}:warning:1:kim:chat_webhook"]
    assert b in desk.kim_chat.requests[0].json()["text"]
    # ... level 2 (secondary) was paged at the breach, as was level 1 ...
    for person, routing_key in (("kim", "RKIM"), ("lars", "RLARS")):
        page = pages(desk.pagers[person].requests, "trigger")[f"{b}:breached"]
        assert page["routing_key"] == routing_key
        assert page["payload"]["severity"] == "critical"
    # ... and the manager, who has no pager, was mailed: the subject names the ticket,
    # a text and an HTML part, the link of the on-call file's template.
    mails = {
        str(message["X-Premium-Support-Key"]): (envelope, message)
        for envelope, message in desk.inbox.messages
    }
    assert set(mails) == {f"{a}:breached:2:mira:email", f"{b}:breached:2:mira:email"}
    envelope, mail = mails[f"{b}:breached:2:mira:email"]
    assert envelope.rcpt_tos == ["mira@support.example"]
    assert mail["To"] == "mira@support.example"
    assert b in str(mail["Subject"]) and "Nobody can log in" in str(mail["Subject"])
    assert mail.get_content_type() == "multipart/alternative"
    text, html = mail.get_body(("plain",)), mail.get_body(("html",))
    assert text is not None and html is not None
    assert "nobody on our team can log in" in text.get_content()
    assert "nobody on our team can log in" in html.get_content()
    link = f"https://helpdesk.example/tickets/{b}"  # the on-call file's link template
    assert link in text.get_content() and f'<a href="{link}">' in html.get_content()
    # ... and every notification went out exactly once, nothing else: in particular no
    # reminder of A, although sla_timer did emit A's warning after the acknowledgement.
    assert Counter(desk.keys()) == expected
    assert desk.team.requests == []

    def sent_keys() -> Counter[str]:
        events.drain()
        by_id = {e.id: e.parsed() for e in cloud_events(events, "escalation.sent")}
        return Counter(data.notification_key for data in by_id.values())  # type: ignore[union-attr]

    wait_for(lambda: set(sent_keys()) >= set(expected))
    assert sent_keys() == expected  # one escalation.sent per notification, by event id
    channels = {e.parsed().channel for e in cloud_events(events, "escalation.sent")}  # type: ignore[union-attr]
    assert channels == {"paging_webhook", "chat_webhook", "email"}
    warnings = {e.subject: e.parsed() for e in cloud_events(events, "sla.warning.")}
    assert set(warnings) == {a, b}
    assert warnings[a].fired_at > ack_done  # type: ignore[union-attr]
    breaches = {e.subject for e in cloud_events(events, "sla.breached.business_critical")}
    assert breaches == {a, b}
    acks = {e.id: e.parsed() for e in cloud_events(events, "escalation.acknowledged")}
    [acknowledged] = acks.values()
    assert acknowledged.ticket_id == a and acknowledged.by == "kim"  # type: ignore[union-attr]
