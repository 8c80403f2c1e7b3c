"""Timestamps bounded at the edge, from the outside: published with pika to the real
broker, read back from support.events and intake.inbound.dead."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from schemas.events import CloudEvent, TicketOpened
from services.upstream import UpstreamPublisher
from tests.conftest import ROOT
from tests.integration.conftest import RunningService, wait_for
from tests.support.capture import Capture, queue_depth

INBOUND = ROOT / "examples" / "inbound"


def test_implausible_years_are_dead_lettered_and_future_create_times_clamped(
    intake: RunningService, upstream: UpstreamPublisher, events: Capture, amqp_url: str, prefix: str
) -> None:
    email = json.loads((INBOUND / "email.json").read_text())
    year_9999 = json.dumps(email | {"received_at": "9999-12-31T00:00:00Z"}).encode()
    raw = (INBOUND / "email-raw.eml").read_bytes()
    raw_10000 = raw.replace(
        b"Date: Thu, 27 Nov 2026 08:58:37 +0000", b"Date: Sat, 01 Jan 10000 00:00:00 +0000"
    )
    assert raw_10000 != raw
    ahead = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    chat = json.loads((INBOUND / "chat.json").read_text())
    future_chat = json.dumps(chat | {"conversation_id": "c-ahead", "started_at": ahead.isoformat()})

    before = datetime.now(UTC)
    upstream.publish("email", year_9999, "application/json", message_id="email-9999")
    upstream.publish("email", raw_10000, "message/rfc822", message_id="raw-10000")
    upstream.publish("chat", future_chat.encode(), "application/json", message_id="chat-ahead")

    wait_for(lambda: intake.settled("acked") + intake.settled("dead_lettered") >= 3)
    after = datetime.now(UTC)
    dead = Capture(amqp_url, f"{prefix}intake.inbound.dead").take(2, settle=0.3)
    received = events.take(1, settle=0.3)

    by_id = {letter.message_id: letter for letter in dead}
    assert set(by_id) == {"email-9999", "raw-10000"}
    for letter in dead:
        assert letter.headers["x-error-reason"] == "invalid_timestamp"
        assert letter.headers["x-attempts"] == 1
    assert "received_at" in by_id["email-9999"].headers["x-error"]
    assert "year 10000" in by_id["raw-10000"].headers["x-error"]
    assert by_id["email-9999"].body == year_9999  # the original, as sent

    [opened] = received
    assert opened.routing_key == "ticket.opened.standard"
    event = CloudEvent.model_validate_json(opened.body)
    ticket = TicketOpened.model_validate(event.data).ticket
    assert before <= ticket.created_at <= after  # when intake received it
    assert ticket.created_at == event.time
    assert ticket.reported_created_at == ahead  # what the chat widget said
    assert ticket.timestamp_note == "future_beyond_skew"
    assert queue_depth(amqp_url, f"{prefix}intake.inbound") == 0
