"""Outgoing.from_data serializes an event once and gives the very bytes (and message
fields) that `Outgoing.event(make_event(...))` gives: the canonical event is unchanged."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from bench import intake_load
from schemas.events import (
    EventData,
    SlaScheduled,
    TicketOpened,
    TicketResolved,
    TicketUpdated,
    event_id,
    make_event,
)
from services.intake.accounts import AccountsDirectory
from services.intake.handlers import IntakeHandlers
from services.runtime.messages import Inbound, Outgoing
from services.runtime.messages import event_id as fast_event_id

ROOT = Path(__file__).resolve().parents[2]
DIRECTORY = AccountsDirectory.load(ROOT / "examples" / "accounts.yaml")
AT = datetime(2026, 11, 27, 12, 0, 0, 123456, tzinfo=UTC)


def both(data: EventData, correlation_id: str = "corr-1", now: datetime = AT) -> Outgoing:
    """The fast Outgoing, after checking it against make_event's."""
    envelope: dict[str, Any] = {
        "service": "intake",
        "subject": "T-chat-0123456789abcdef",
        "cause": "opened",
        "correlation_id": correlation_id,
        "now": now,
    }
    slow = make_event(data, **envelope)
    fast = Outgoing.from_data(data, **envelope)
    assert fast.body == slow.model_dump_json().encode()
    assert fast == Outgoing.event(slow)  # key, ids, headers and log fields too
    return fast


def test_every_event_of_the_bench_load_is_the_same_bytes() -> None:
    handlers = IntakeHandlers(DIRECTORY, clock=lambda: AT)
    routes = handlers.routes()
    channels = {"chat": handlers.chat, "email": handlers.email, "phone": handlers.phone}
    seen = set()
    for m in intake_load.build(400, "t"):
        message = Inbound(m.body, m.routing_key, "support.inbound", "application/json", {}, "x")
        fast = routes[m.routing_key](message)
        slow = channels[m.routing_key.removeprefix("inbound.")](message)
        assert fast == [Outgoing.event(e) for e in slow]
        seen |= {o.routing_key for o in fast}
    assert {"ticket.opened.standard", "ticket.opened.business_critical"} <= seen
    assert "ticket.updated" in seen


def test_raw_email_with_attachments_is_the_same_bytes() -> None:
    at = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    handlers = IntakeHandlers(DIRECTORY, clock=lambda: at)
    raw = (ROOT / "examples" / "inbound" / "email-raw.eml").read_bytes()
    message = Inbound(raw, "inbound.email", "support.inbound", "message/rfc822", {}, "<a@b>")
    [fast] = handlers.routes()["inbound.email"](message)
    [slow] = handlers.email(message)
    assert fast == Outgoing.event(slow)


@pytest.mark.parametrize(
    "now",
    [
        AT,
        AT.replace(microsecond=0),
        AT.astimezone(timezone(timedelta(hours=5, minutes=30))),
        AT.astimezone(timezone(timedelta(hours=-3))),
    ],
)
def test_times_render_as_pydantic_renders_them(now: datetime) -> None:
    both(TicketResolved(ticket_id="T-chat-0123456789abcdef", at=now), now=now)


@given(st.text(min_size=1))
def test_any_correlation_id_is_escaped_as_pydantic_escapes_it(correlation_id: str) -> None:
    try:
        correlation_id.encode()
    except UnicodeEncodeError:  # a lone surrogate: neither path can write it
        return
    data = TicketUpdated(
        ticket_id="T-chat-0123456789abcdef",
        channel="chat",
        at=AT,
        author=correlation_id,
        text=correlation_id,
        source={"extra": {correlation_id: [1.5, None, True, 10**20, {"k": correlation_id}]}},
    )
    both(data, correlation_id=correlation_id)


def test_keys_carry_the_severity_where_the_event_has_one() -> None:
    sla = SlaScheduled(
        ticket_id="T-chat-0123456789abcdef",
        severity="business_critical",
        guaranteed=True,
        policy_rule="r",
        policy_version="1",
        started_at=AT,
        due_at=AT + timedelta(hours=1),
        warn_at=None,
        calendar="24x7",
    )
    assert both(sla).routing_key == "sla.scheduled.business_critical"
    resolved = TicketResolved(ticket_id="T-chat-0123456789abcdef", at=AT)
    assert both(resolved).routing_key == "ticket.resolved"


def test_what_the_envelope_refuses_is_refused_alike() -> None:
    data = TicketResolved(ticket_id="T-chat-0123456789abcdef", at=AT)
    naive = datetime(2026, 11, 27, 12, 0)
    for kwargs in ({"now": naive, "service": "intake"}, {"now": AT, "service": "In-take"}):
        envelope: dict[str, Any] = {"subject": "s", "cause": "c", "correlation_id": "x"}
        with pytest.raises(ValidationError):
            make_event(data, **envelope, **kwargs)
        with pytest.raises(ValidationError):
            Outgoing.from_data(data, **envelope, **kwargs)


@given(st.text(), st.text(), st.text())
def test_event_ids_are_uuid5_as_schemas_derive_them(subject: str, kind: str, cause: str) -> None:
    try:
        expected = event_id(subject, kind, cause)
    except UnicodeEncodeError:
        with pytest.raises(UnicodeEncodeError):
            fast_event_id(subject, kind, cause)
        return
    assert fast_event_id(subject, kind, cause) == expected
    assert uuid.UUID(expected).version == 5


def test_opened_events_have_the_ticket_key() -> None:
    handlers = IntakeHandlers(DIRECTORY, clock=lambda: AT)
    body = (ROOT / "examples" / "inbound" / "email.json").read_bytes()
    message = Inbound(body, "inbound.email", "support.inbound", "application/json", {}, "m")
    [slow] = handlers.email(message)
    assert isinstance(slow.parsed(), TicketOpened)
    assert both(slow.parsed(), correlation_id="m").routing_key == slow.routing_key
