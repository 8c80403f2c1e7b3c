"""Timestamps bounded at the edge: implausible years are dead-lettered, times from the
future start the clock when intake received the request (pure: `now` is passed in)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter
from structlog.testing import capture_logs

from schemas.events import (
    CloudEvent,
    EscalationAcknowledged,
    TicketOpened,
    TicketResponded,
    TicketUpdated,
)
from schemas.inbound import ChatRequest, EmailForm, HelpdeskUpdate, PhoneRequest
from schemas.ticket import Ticket
from services.intake.accounts import AccountsDirectory
from services.intake.handlers import IntakeHandlers
from services.intake.helpdesk import normalize_helpdesk
from services.intake.mime import parse_mime
from services.intake.normalize import (
    Context,
    normalize_chat,
    normalize_email_form,
    normalize_phone,
    normalize_raw_email,
)
from services.runtime.errors import PermanentError
from services.runtime.messages import Inbound

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "inbound"
DIRECTORY = AccountsDirectory.load(ROOT / "examples" / "accounts.yaml")
NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
LATER = NOW + timedelta(hours=1)
IN_3_DAYS = NOW + timedelta(days=3)
HELPDESK = TypeAdapter[Any](HelpdeskUpdate)
UPDATE_TYPES = ["first_response", "reclassified", "exempted", "resolved", "acknowledged"]
UPDATE_FIELDS: dict[str, dict[str, str]] = {
    "first_response": {"agent": "sam"},
    "reclassified": {"severity": "standard", "reason": "one user"},
    "exempted": {"reason": "customer asked to wait"},
    "resolved": {},
    "acknowledged": {"by": "oncall-kim"},
}


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def example(name: str, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return payload | overrides


def ctx(now: datetime = NOW, max_skew: timedelta | None = None) -> Context:
    if max_skew is None:
        return Context(DIRECTORY, correlation_id="corr-1", now=now)
    return Context(DIRECTORY, correlation_id="corr-1", now=now, max_skew=max_skew)


def ticket_of(event: CloudEvent) -> Ticket:
    data = event.parsed()
    assert isinstance(data, TicketOpened)
    return data.ticket


def update(kind: str, at: str) -> dict[str, Any]:
    return {"type": kind, "ticket_id": "T-email-0207b44e3d661cc0", "at": at, **UPDATE_FIELDS[kind]}


def raw_email(date: str | None, message_id: str = "<ts-1@mail.acme.example>") -> bytes:
    lines = [
        "From: Ana Ruiz <ana@acme.example>",
        "To: premium+4411@support.example",
        "Subject: Login outage",
        f"Message-ID: {message_id}",
        *([f"Date: {date}"] if date is not None else []),
        "Content-Type: text/plain; charset=utf-8",
        "",
        "Nobody on our team can log in.",
        "",
    ]
    return "\r\n".join(lines).encode()


# --- create times from the future (pure) -------------------------------------------------


def test_a_chat_started_3_days_ahead_starts_its_clock_when_intake_received_it() -> None:
    with capture_logs() as logs:
        [event] = normalize_chat(
            ChatRequest.model_validate(example("chat.json", started_at=iso(IN_3_DAYS))), ctx()
        )
    ticket = ticket_of(event)

    assert ticket.created_at == NOW
    assert ticket.reported_created_at == IN_3_DAYS
    assert ticket.timestamp_note == "future_beyond_skew"
    [warning] = [entry for entry in logs if entry["event"] == "intake.future_timestamp_clamped"]
    assert warning["log_level"] == "warning"
    assert warning["ticket_id"] == ticket.ticket_id
    assert warning["reported"] == IN_3_DAYS.isoformat()
    assert warning["ahead_s"] == 3 * 86400


@pytest.mark.parametrize(
    ("ahead", "clamped"),
    [
        (timedelta(days=-3), False),
        (timedelta(0), False),
        (timedelta(minutes=4, seconds=59), False),
        (timedelta(minutes=5), False),  # exactly the allowed skew: believed
        (timedelta(minutes=5, microseconds=1), True),
        (timedelta(days=3), True),
    ],
)
def test_only_times_beyond_the_skew_are_replaced(ahead: timedelta, clamped: bool) -> None:
    reported = NOW + ahead
    [event] = normalize_phone(
        PhoneRequest.model_validate(example("phone.json", requested_at=reported.isoformat())),
        ctx(),
    )
    ticket = ticket_of(event)

    assert ticket.created_at == (NOW if clamped else reported)
    assert ticket.reported_created_at == (reported if clamped else None)
    assert ticket.timestamp_note == ("future_beyond_skew" if clamped else None)


def test_the_skew_is_configurable() -> None:
    payload = EmailForm.model_validate(
        example("email.json", received_at=iso(NOW + timedelta(seconds=30)))
    )

    [strict] = normalize_email_form(payload, ctx(max_skew=timedelta(0)))
    [lenient] = normalize_email_form(payload, ctx())

    assert ticket_of(strict).created_at == NOW
    assert ticket_of(strict).reported_created_at == NOW + timedelta(seconds=30)
    assert ticket_of(lenient).created_at == NOW + timedelta(seconds=30)


def test_the_offset_of_the_reported_time_is_kept() -> None:
    ahead = IN_3_DAYS.astimezone(timezone(timedelta(hours=-8)))
    [event] = normalize_email_form(
        EmailForm.model_validate(example("email.json", received_at=ahead.isoformat())), ctx()
    )

    reported = ticket_of(event).reported_created_at
    assert reported is not None
    assert (reported, reported.utcoffset()) == (ahead, timedelta(hours=-8))


def test_a_clamped_ticket_keeps_its_ids_whatever_the_clock_says() -> None:
    """A redelivery an hour later gives the same ticket and event ids (ids never use now)."""
    payload = ChatRequest.model_validate(example("chat.json", started_at=iso(IN_3_DAYS)))

    [first] = normalize_chat(payload, ctx(NOW))
    [again] = normalize_chat(payload, ctx(LATER))

    assert first.id == again.id
    assert ticket_of(first).ticket_id == ticket_of(again).ticket_id


def test_raw_email_with_a_date_from_the_future() -> None:
    mail = parse_mime(raw_email("Mon, 30 Nov 2026 12:00:00 +0000"))

    [event] = normalize_raw_email(mail, NOW, ctx())

    ticket = ticket_of(event)
    assert ticket.created_at == NOW
    assert ticket.reported_created_at == datetime(2026, 11, 30, 12, tzinfo=UTC)
    assert ticket.timestamp_note == "future_beyond_skew"


def test_raw_email_without_a_readable_date_starts_at_receipt_unflagged() -> None:
    for date in (None, "sometime next week"):
        [event] = normalize_raw_email(parse_mime(raw_email(date)), NOW, ctx())
        ticket = ticket_of(event)
        assert (ticket.created_at, ticket.reported_created_at, ticket.timestamp_note) == (
            NOW,
            None,
            None,
        )


def test_follow_ups_from_the_future_are_clamped_too() -> None:
    chat = example("chat.json")
    chat["messages"].append({"from": "visitor", "at": iso(IN_3_DAYS), "text": "Hello?"})
    payload = ChatRequest.model_validate(chat)

    opened, updated = normalize_chat(payload, ctx())
    _, again = normalize_chat(payload, ctx(LATER))

    data = updated.parsed()
    assert isinstance(data, TicketUpdated)
    assert data.at == NOW
    assert ticket_of(opened).created_at == datetime(2026, 11, 27, 9, 58, 2, tzinfo=UTC)
    assert updated.id == again.id  # the cause keeps the reported instant

    reply = EmailForm.model_validate(
        example(
            "email.json",
            message_id="<r-1@mail.acme.example>",
            in_reply_to="<f00d@mail.acme.example>",
            received_at=iso(IN_3_DAYS),
        )
    )
    [replied] = normalize_email_form(reply, ctx())
    reply_data = replied.parsed()
    assert isinstance(reply_data, TicketUpdated)
    assert reply_data.at == NOW


# --- helpdesk updates from the future are clamped, not dead-lettered ----------------------


@pytest.mark.parametrize("kind", UPDATE_TYPES)
def test_a_helpdesk_update_from_the_future_is_clamped_to_now(kind: str) -> None:
    payload = HELPDESK.validate_python(update(kind, iso(IN_3_DAYS)))

    with capture_logs() as logs:
        [event] = normalize_helpdesk(payload, "corr-1", NOW)
    [again] = normalize_helpdesk(payload, "corr-1", LATER)

    assert event.data["at"] == iso(NOW)
    assert event.id == again.id
    assert [entry["what"] for entry in logs] == [f"{kind}.at"]
    assert logs[0]["reported"] == IN_3_DAYS.isoformat()


@pytest.mark.parametrize("kind", UPDATE_TYPES)
def test_a_helpdesk_update_within_the_skew_is_kept(kind: str) -> None:
    at = NOW + timedelta(minutes=4)
    payload = HELPDESK.validate_python(update(kind, iso(at)))

    with capture_logs() as logs:
        [event] = normalize_helpdesk(payload, "corr-1", NOW)

    assert event.data["at"] == iso(at)
    assert logs == []


def test_the_helpdesk_skew_is_configurable() -> None:
    payload = HELPDESK.validate_python(update("first_response", iso(NOW + timedelta(minutes=1))))

    [event] = normalize_helpdesk(payload, "corr-1", NOW, max_skew=timedelta(0))

    data = event.parsed()
    assert isinstance(data, TicketResponded)
    assert data.at == NOW


# --- the Ticket model: additive fields ------------------------------------------------


def test_an_unadjusted_ticket_serializes_as_before() -> None:
    [event] = normalize_chat(ChatRequest.model_validate(example("chat.json")), ctx())
    ticket = event.data["ticket"]

    assert "reported_created_at" not in ticket
    assert "timestamp_note" not in ticket
    assert Ticket.model_validate(ticket).reported_created_at is None


def test_an_adjusted_ticket_round_trips() -> None:
    [event] = normalize_chat(
        ChatRequest.model_validate(example("chat.json", started_at=iso(IN_3_DAYS))), ctx()
    )
    raw = json.loads(json.dumps(event.data["ticket"]))

    assert raw["created_at"] == iso(NOW)
    assert raw["reported_created_at"] == iso(IN_3_DAYS)
    assert raw["timestamp_note"] == "future_beyond_skew"
    assert Ticket.model_validate(raw) == ticket_of(event)


# --- implausible years: dead-lettered as invalid_timestamp (handlers, bytes in) --------


ROUTES = IntakeHandlers(DIRECTORY, clock=lambda: NOW).routes()


def handle(routing_key: str, body: bytes | dict[str, Any], ctype: str = "application/json") -> Any:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    message = Inbound(
        body=raw, routing_key=routing_key, exchange="support.inbound", content_type=ctype
    )
    return ROUTES[routing_key](message)


def permanent(
    routing_key: str, body: bytes | dict[str, Any], ctype: str = "application/json"
) -> PermanentError:
    with pytest.raises(PermanentError) as info:
        handle(routing_key, body, ctype)
    return info.value


ABSURD = [
    "9999-12-31T00:00:00Z",
    "10000-01-01T00:00:00Z",  # pydantic cannot parse it at all
    "2101-01-01T00:00:00Z",
    "1999-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "0000-01-01T00:00:00Z",
]


@pytest.mark.parametrize("value", ABSURD)
@pytest.mark.parametrize(
    ("routing_key", "name", "field"),
    [
        ("inbound.chat", "chat.json", "started_at"),
        ("inbound.email", "email.json", "received_at"),
        ("inbound.phone", "phone.json", "requested_at"),
    ],
)
def test_an_implausible_create_time_is_invalid_timestamp(
    routing_key: str, name: str, field: str, value: str
) -> None:
    error = permanent(routing_key, example(name, **{field: value}))

    assert error.reason == "invalid_timestamp"
    assert field in error.detail


@pytest.mark.parametrize("value", ABSURD)
def test_an_implausible_chat_message_time_is_invalid_timestamp(value: str) -> None:
    chat = example("chat.json")
    chat["messages"].append({"from": "agent", "at": value, "text": "On it"})

    error = permanent("inbound.chat", chat)

    assert error.reason == "invalid_timestamp"
    assert "messages.1.at" in error.detail


@pytest.mark.parametrize("value", ABSURD)
@pytest.mark.parametrize("kind", UPDATE_TYPES)
def test_an_implausible_helpdesk_time_is_invalid_timestamp(kind: str, value: str) -> None:
    error = permanent("inbound.helpdesk", update(kind, value))

    assert error.reason == "invalid_timestamp"
    assert "at" in error.detail


@pytest.mark.parametrize(
    "date",
    [
        "Fri, 31 Dec 9999 00:00:00 +0000",
        "Sat, 01 Jan 10000 00:00:00 +0000",  # no datetime holds it
        "Thu, 01 Jan 1970 00:00:00 +0000",
        "Thu, 01 Jan 70 00:00:00 +0000",  # a two-digit year is 1970
    ],
)
def test_a_raw_email_with_an_implausible_date_is_invalid_timestamp(date: str) -> None:
    error = permanent("inbound.email", raw_email(date), "message/rfc822")

    assert error.reason == "invalid_timestamp"
    assert "Date header" in error.detail


def test_the_year_bounds_are_inclusive() -> None:
    for value in ("2000-01-01T00:00:00Z", "2100-12-31T23:59:59-05:00"):
        [event] = [
            CloudEvent.model_validate_json(out.body)
            for out in handle("inbound.helpdesk", update("resolved", value))
        ]
        assert event.type == "support.ticket.resolved"


@pytest.mark.parametrize("value", [1e20, 10**30, -(10**16)])
def test_a_number_no_datetime_can_hold_is_invalid_timestamp(value: float) -> None:
    error = permanent("inbound.chat", example("chat.json", started_at=value))

    assert error.reason == "invalid_timestamp"


def test_a_unix_time_in_range_is_accepted_as_pydantic_does() -> None:
    outputs = handle("inbound.phone", example("phone.json", requested_at=1795000000))

    ticket = TicketOpened.model_validate(CloudEvent.model_validate_json(outputs[0].body).data)
    assert ticket.ticket.created_at == datetime.fromtimestamp(1795000000, UTC)


@pytest.mark.parametrize(
    "value",
    ["yesterday", "2026-13-01T00:00:00Z", "2026-11-27T09:58:02", "12-31-9999T00:00:00Z", True],
)
def test_an_unreadable_or_zoneless_time_stays_a_schema_violation(value: Any) -> None:
    error = permanent("inbound.email", example("email.json", received_at=value))

    assert error.reason == "schema_violation"


def test_an_implausible_time_beside_another_problem_is_a_schema_violation() -> None:
    body = example("chat.json", started_at="9999-01-01T00:00:00Z")
    del body["conversation_id"]

    error = permanent("inbound.chat", body)

    assert error.reason == "schema_violation"
    assert "conversation_id" in error.detail and "started_at" in error.detail


def test_handlers_clamp_with_their_clock_and_skew() -> None:
    body = example("chat.json", started_at=iso(NOW + timedelta(minutes=2)))
    strict = IntakeHandlers(DIRECTORY, clock=lambda: NOW, max_clock_skew=timedelta(minutes=1))

    outputs = strict.routes()["inbound.chat"](
        Inbound(
            body=json.dumps(body).encode(),
            routing_key="inbound.chat",
            exchange="support.inbound",
            content_type="application/json",
        )
    )
    [lenient] = handle("inbound.chat", body)

    strict_ticket = TicketOpened.model_validate(
        CloudEvent.model_validate_json(outputs[0].body).data
    )
    lenient_ticket = TicketOpened.model_validate(CloudEvent.model_validate_json(lenient.body).data)
    assert strict_ticket.ticket.created_at == NOW
    assert lenient_ticket.ticket.created_at == NOW + timedelta(minutes=2)


def test_an_acknowledgement_from_the_future_reaches_the_bus_at_now() -> None:
    [out] = handle("inbound.helpdesk", update("acknowledged", iso(IN_3_DAYS)))

    data = CloudEvent.model_validate_json(out.body).parsed()
    assert isinstance(data, EscalationAcknowledged)
    assert data.at == NOW
