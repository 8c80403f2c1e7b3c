"""Each channel end to end: pika publishes into support.inbound, intake runs against the
real broker, and the canonical events are read back from support.events."""

from __future__ import annotations

import json

import pika

from schemas.events import CloudEvent, TicketOpened
from services.intake.ids import ticket_id
from services.upstream import UpstreamPublisher, pika_parameters
from tests.conftest import ROOT
from tests.integration.conftest import RunningService
from tests.support.capture import Capture

INBOUND = ROOT / "examples" / "inbound"

RAW_EMAIL = (
    b"From: =?utf-8?q?Ana_Ru=C3=ADz?= <Ana@Acme.example>\r\n"
    b"To: premium+4411@support.example\r\n"
    b"Subject: =?iso-8859-1?q?Caf=E9_portal_is_down?=\r\n"
    b"Message-ID: <raw-1@mail.acme.example>\r\n"
    b"Date: Fri, 27 Nov 2026 10:58:02 +0100\r\n"
    b"X-Business-Critical: yes\r\n"
    b"MIME-Version: 1.0\r\n"
    b"Content-Type: text/plain; charset=windows-1252\r\n"
    b"Content-Transfer-Encoding: quoted-printable\r\n"
    b"\r\n"
    b"Nobody on our team can log in =96 the whole site is down.\r\n"
)


def _events(capture: Capture, count: int) -> list[CloudEvent]:
    received = capture.take(count, settle=0.3)
    return [CloudEvent.model_validate(r.json()) for r in received]


def test_chat_request_opens_a_ticket(
    intake: RunningService, upstream: UpstreamPublisher, events: Capture
) -> None:
    message_id = upstream.publish("chat", (INBOUND / "chat.json").read_bytes())

    [event] = _events(events, 1)
    ticket = TicketOpened.model_validate(event.data).ticket
    assert event.type == "support.ticket.opened"
    assert event.routing_key == events.received[0].routing_key == "ticket.opened.standard"
    assert event.correlationid == message_id
    assert events.received[0].message_id == event.id
    assert ticket.ticket_id == ticket_id("chat", "c-7781") == event.subject
    assert ticket.submitter.role == "super_admin"
    assert ticket.premium is True
    assert ticket.created_at.isoformat() == "2026-11-27T09:58:02+00:00"
    assert [h.signal for h in ticket.triage_hints] == ["login_outage"]


def test_email_form_marked_critical(
    intake: RunningService, upstream: UpstreamPublisher, events: Capture
) -> None:
    upstream.publish("email", (INBOUND / "email.json").read_bytes())

    [event] = _events(events, 1)
    assert events.received[0].routing_key == "ticket.opened.business_critical"
    ticket = TicketOpened.model_validate(event.data).ticket
    assert ticket.submitter.email == "ana@acme.example"
    assert ticket.submitter_marked_critical is True


def test_raw_mime_email(
    intake: RunningService, upstream: UpstreamPublisher, events: Capture
) -> None:
    upstream.publish("email", RAW_EMAIL, content_type="message/rfc822")

    [event] = _events(events, 1)
    ticket = TicketOpened.model_validate(event.data).ticket
    assert events.received[0].routing_key == "ticket.opened.business_critical"
    assert ticket.portal_id == 4411  # from premium+4411@
    assert ticket.subject == "Café portal is down"
    assert "log in \u2013 the whole site" in ticket.text
    assert ticket.submitter.role == "super_admin"
    assert ticket.created_at.isoformat() == "2026-11-27T10:58:02+01:00"


def test_email_reply_updates_the_same_ticket(
    intake: RunningService, upstream: UpstreamPublisher, events: Capture
) -> None:
    first = json.loads((INBOUND / "email.json").read_text())
    reply = first | {
        "message_id": "<reply-1@mail.acme.example>",
        "in_reply_to": first["message_id"],
        "references": [first["message_id"]],
        "text": "Still down, please call us.",
        "received_at": "2026-11-27T10:10:00Z",
    }
    upstream.publish("email", json.dumps(first).encode())
    upstream.publish("email", json.dumps(reply).encode())

    opened, updated = _events(events, 2)
    assert [r.routing_key for r in events.received] == [
        "ticket.opened.business_critical",
        "ticket.updated",
    ]
    assert opened.subject == updated.subject
    assert updated.data["text"] == "Still down, please call us."


def test_phone_callback_normalizes_the_number(
    intake: RunningService, upstream: UpstreamPublisher, events: Capture
) -> None:
    upstream.publish("phone", (INBOUND / "phone.json").read_bytes())

    [event] = _events(events, 1)
    ticket = TicketOpened.model_validate(event.data).ticket
    assert events.received[0].routing_key == "ticket.opened.business_critical"
    assert ticket.submitter.phone == "+31205550134"
    assert ticket.submitter.role == "super_admin"
    assert ticket.call_kind == "callback_request"


def test_helpdesk_updates(
    intake: RunningService, upstream: UpstreamPublisher, events: Capture
) -> None:
    upstream.publish("helpdesk", (INBOUND / "helpdesk-first-response.json").read_bytes())
    upstream.publish("helpdesk", (INBOUND / "helpdesk-acknowledged.json").read_bytes())

    responded, acknowledged = _events(events, 2)
    assert [r.routing_key for r in events.received] == [
        "ticket.responded",
        "escalation.acknowledged",
    ]
    assert responded.data["agent"] == "sam"
    assert acknowledged.data["by"] == "oncall-kim"


def test_every_event_is_kept_in_the_event_log_stream(
    intake: RunningService, upstream: UpstreamPublisher, events: Capture, amqp_url: str, prefix: str
) -> None:
    upstream.publish("chat", (INBOUND / "chat.json").read_bytes())
    [event] = _events(events, 1)

    conn = pika.BlockingConnection(pika_parameters(amqp_url))
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=10)  # NOTE: stream consumers must set a prefetch
        got: list[bytes] = []
        tag = ch.basic_consume(
            f"{prefix}support.events.log",
            lambda c, m, p, b: got.append(b),
            arguments={"x-stream-offset": "first"},
        )
        conn.process_data_events(time_limit=2)
        ch.basic_cancel(tag)
    finally:
        conn.close()
    assert [json.loads(b)["id"] for b in got] == [event.id]
