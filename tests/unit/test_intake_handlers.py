"""Intake's edge: Inbound (bytes + content type) -> Outgoing events, or a PermanentError."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import CloudEvent, TicketOpened, TicketUpdated
from services.common.text import clean_text
from services.intake.accounts import AccountsDirectory
from services.intake.handlers import IntakeHandlers
from services.runtime.errors import PermanentError
from services.runtime.messages import Inbound, Outgoing

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "inbound"
DIRECTORY = AccountsDirectory.load(ROOT / "examples" / "accounts.yaml")
FIXED = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
ROUTES = IntakeHandlers(DIRECTORY, clock=lambda: FIXED).routes()
ROUTING_KEYS = ("inbound.chat", "inbound.email", "inbound.phone", "inbound.helpdesk")
EMAIL_TICKET = "T-email-0207b44e3d661cc0"


def example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    return data


def inbound(
    routing_key: str,
    body: bytes | dict[str, Any],
    content_type: str | None = "application/json",
    message_id: str | None = None,
) -> Inbound:
    raw = json.dumps(body).encode() if isinstance(body, dict) else body
    return Inbound(
        body=raw,
        routing_key=routing_key,
        exchange="support.inbound",
        content_type=content_type,
        message_id=message_id,
    )


def handle(message: Inbound) -> list[Outgoing]:
    return ROUTES[message.routing_key](message)


def events_of(outputs: list[Outgoing]) -> list[CloudEvent]:
    events = []
    for out in outputs:
        assert isinstance(out, Outgoing)
        event = CloudEvent.model_validate_json(out.body)
        assert out.exchange == "support.events"
        assert out.message_id == event.id
        assert out.routing_key == event.routing_key
        assert out.correlation_id == event.correlationid
        events.append(event)
    return events


def permanent(message: Inbound) -> PermanentError:
    with pytest.raises(PermanentError) as info:
        handle(message)
    return info.value


def outgoing_or_permanent(message: Inbound) -> None:
    """The handler contract: a list of Outgoing, or a PermanentError; nothing else."""
    try:
        outputs = handle(message)
    except PermanentError as exc:
        assert exc.reason != "permanent", "a PermanentError must carry a specific reason"
        return
    assert isinstance(outputs, list)
    events_of(outputs)


# --- happy paths ----------------------------------------------------------------------


def test_routes_cover_the_four_inbound_keys() -> None:
    assert sorted(ROUTES) == sorted(ROUTING_KEYS)


@pytest.mark.parametrize(
    ("routing_key", "name", "expected_key"),
    [
        ("inbound.chat", "chat.json", "ticket.opened.standard"),
        ("inbound.email", "email.json", "ticket.opened.business_critical"),
        ("inbound.phone", "phone.json", "ticket.opened.business_critical"),
        ("inbound.helpdesk", "helpdesk-first-response.json", "ticket.responded"),
        ("inbound.helpdesk", "helpdesk-acknowledged.json", "escalation.acknowledged"),
    ],
)
def test_examples_become_one_event_each(routing_key: str, name: str, expected_key: str) -> None:
    outputs = handle(inbound(routing_key, example(name), message_id="msg-42"))
    [event] = events_of(outputs)

    assert outputs[0].routing_key == expected_key
    assert outputs[0].content_type == "application/cloudevents+json"
    assert event.correlationid == "msg-42"
    assert event.time == FIXED
    assert event.source == "/premium-support/intake"


def test_email_example_ticket_matches_the_helpdesk_examples() -> None:
    [event] = events_of(handle(inbound("inbound.email", example("email.json"))))
    ticket = TicketOpened.model_validate(event.data).ticket

    assert event.subject == ticket.ticket_id == EMAIL_TICKET
    assert ticket.created_at == datetime(2026, 11, 27, 9, 58, 2, tzinfo=UTC)


def test_correlation_id_without_message_id_is_a_body_digest() -> None:
    body = example("chat.json")
    [first] = events_of(handle(inbound("inbound.chat", body)))
    [again] = events_of(handle(inbound("inbound.chat", body)))
    [other] = events_of(handle(inbound("inbound.chat", {**body, "language": "nl"})))

    assert first.correlationid.startswith("sha256:")
    assert len(first.correlationid) > len("sha256:") + 16
    assert first.correlationid == again.correlationid
    assert other.correlationid != first.correlationid
    # the correlation id does not take part in the event id
    assert other.id == first.id


@pytest.mark.parametrize("content_type", [None, "application/json; charset=utf-8", "text/json"])
def test_json_content_types_accepted(content_type: str | None) -> None:
    outputs = handle(inbound("inbound.chat", example("chat.json"), content_type=content_type))

    assert [o.routing_key for o in outputs] == ["ticket.opened.standard"]


def test_raw_rfc822_email() -> None:
    raw = (
        b"From: Ana Ruiz <ana@acme.example>\r\n"
        b"To: premium+4411@support.example\r\n"
        b"Subject: Login outage\r\n"
        b"Message-ID: <raw-1@mail.acme.example>\r\n"
        b"Date: Fri, 27 Nov 2026 10:58:02 +0100\r\n"
        b"X-Business-Critical: yes\r\n"
        b"Content-Type: text/plain; charset=utf-8\r\n"
        b"\r\n"
        b"Nobody on our team can log in.\r\n"
    )
    outputs = handle(inbound("inbound.email", raw, content_type="message/rfc822"))
    [event] = events_of(outputs)
    ticket = TicketOpened.model_validate(event.data).ticket

    assert outputs[0].routing_key == "ticket.opened.business_critical"
    assert ticket.portal_id == 4411
    assert ticket.submitter.role == "super_admin"
    assert ticket.created_at == datetime(2026, 11, 27, 9, 58, 2, tzinfo=UTC)


def test_chat_snapshot_with_two_visitor_messages() -> None:
    body = example("chat.json")
    body["messages"].append({"from": "visitor", "at": "2026-11-27T10:00:00Z", "text": "Hello?"})
    opened, updated = events_of(handle(inbound("inbound.chat", body, message_id="m-1")))

    assert opened.routing_key == "ticket.opened.standard"
    assert updated.routing_key == "ticket.updated"
    assert opened.subject == updated.subject
    assert opened.correlationid == updated.correlationid == "m-1"


# --- permanent errors -----------------------------------------------------------------


@pytest.mark.parametrize("routing_key", ROUTING_KEYS)
@pytest.mark.parametrize(
    "body",
    [b"", b"{not json", b'{"portal_id": 4411', b"\x00\x01\x02", b"undefined"],
    ids=["empty", "garbage", "truncated", "binary", "bare-word"],
)
def test_invalid_json(routing_key: str, body: bytes) -> None:
    error = permanent(inbound(routing_key, body))

    assert error.reason == "invalid_json"


@pytest.mark.parametrize("routing_key", ROUTING_KEYS)
def test_non_utf8_bytes_are_invalid_json(routing_key: str) -> None:
    body = b'{"conversation_id": "c-\xe9t\xe9", "portal_id": 4411}'  # Latin-1

    assert permanent(inbound(routing_key, body)).reason == "invalid_json"


def test_utf16_json_is_rejected_as_invalid_json() -> None:
    # DESIGN section 4: inbound JSON is UTF-8.
    body = json.dumps(example("chat.json")).encode("utf-16")

    assert permanent(inbound("inbound.chat", body)).reason == "invalid_json"


def test_deeply_nested_json_is_a_permanent_error() -> None:
    body = b"[" * 100_000 + b"]" * 100_000  # under the 1 MiB limit

    assert permanent(inbound("inbound.chat", body)).reason == "invalid_json"


def test_huge_integer_is_a_permanent_error() -> None:
    body = b'{"conversation_id": "c-1", "portal_id": ' + b"9" * 5000 + b"}"

    assert permanent(inbound("inbound.chat", body)).reason in ("invalid_json", "schema_violation")


@pytest.mark.parametrize(
    ("routing_key", "name", "field"),
    [
        ("inbound.chat", "chat.json", "language"),
        ("inbound.chat", "chat.json", "widget"),  # an unknown field, kept in source.extra
        ("inbound.email", "email.json", "subject"),
        ("inbound.email", "email.json", "mailbox"),
        ("inbound.phone", "phone.json", "transcript"),
        ("inbound.phone", "phone.json", "trunk"),
    ],
)
def test_lone_surrogate_escape_gives_outgoing_or_permanent_error(
    routing_key: str, name: str, field: str
) -> None:
    # Valid JSON ("\\ud83d" is a legal escape) that no UTF-8 document can carry.
    text = json.dumps({**example(name), field: "SURROGATE"})
    body = text.replace('"SURROGATE"', '"\\ud83d oops"').encode()
    assert b"\\ud83d" in body

    outgoing_or_permanent(inbound(routing_key, body))


@pytest.mark.parametrize(
    ("routing_key", "content_type"),
    [
        ("inbound.chat", "text/plain"),
        ("inbound.chat", "message/rfc822"),
        ("inbound.phone", "application/xml"),
        ("inbound.helpdesk", "text/plain; charset=utf-8"),
        ("inbound.email", "text/plain"),
    ],
)
def test_unsupported_content_type(routing_key: str, content_type: str) -> None:
    error = permanent(inbound(routing_key, example("chat.json"), content_type=content_type))

    assert error.reason == "unsupported_content_type"
    assert routing_key in error.detail


@pytest.mark.parametrize(
    ("routing_key", "name", "field"),
    [
        ("inbound.chat", "chat.json", "conversation_id"),
        ("inbound.chat", "chat.json", "started_at"),
        ("inbound.chat", "chat.json", "messages"),
        ("inbound.email", "email.json", "message_id"),
        ("inbound.email", "email.json", "received_at"),
        ("inbound.phone", "phone.json", "call_id"),
        ("inbound.phone", "phone.json", "kind"),
        ("inbound.helpdesk", "helpdesk-first-response.json", "agent"),
        ("inbound.helpdesk", "helpdesk-acknowledged.json", "ticket_id"),
    ],
)
def test_missing_required_field_is_a_schema_violation(
    routing_key: str, name: str, field: str
) -> None:
    body = example(name)
    del body[field]
    error = permanent(inbound(routing_key, body))

    assert error.reason == "schema_violation"
    assert field in error.detail


@pytest.mark.parametrize(
    ("routing_key", "name", "field", "value"),
    [
        ("inbound.chat", "chat.json", "portal_id", "acme"),
        ("inbound.chat", "chat.json", "started_at", "2026-11-27T09:58:02"),  # no offset
        ("inbound.chat", "chat.json", "messages", []),
        ("inbound.email", "email.json", "references", "<f00d@mail.acme.example>"),
        ("inbound.phone", "phone.json", "kind", "voicemail"),
    ],
)
def test_mistyped_field_is_a_schema_violation(
    routing_key: str, name: str, field: str, value: Any
) -> None:
    error = permanent(inbound(routing_key, {**example(name), field: value}))

    assert error.reason == "schema_violation"
    assert field in error.detail


@pytest.mark.parametrize("routing_key", ROUTING_KEYS)
@pytest.mark.parametrize("body", [b"[]", b"null", b"42", b'"text"'])
def test_json_that_is_not_an_object_is_a_schema_violation(routing_key: str, body: bytes) -> None:
    assert permanent(inbound(routing_key, body)).reason == "schema_violation"


@pytest.mark.parametrize(
    "ticket_id", ["T-123", "T-email-0207B44E3D661CC0", "T-fax-0207b44e3d661cc0", ""]
)
def test_helpdesk_malformed_ticket_id(ticket_id: str) -> None:
    body = {**example("helpdesk-first-response.json"), "ticket_id": ticket_id}
    error = permanent(inbound("inbound.helpdesk", body))

    assert error.reason == "schema_violation"
    assert "ticket_id" in error.detail


def test_helpdesk_unknown_type() -> None:
    body = {**example("helpdesk-first-response.json"), "type": "escalated"}
    error = permanent(inbound("inbound.helpdesk", body))

    assert error.reason == "schema_violation"
    assert "escalated" in error.detail or "type" in error.detail


def test_helpdesk_reclassified_to_unknown_severity() -> None:
    body = {
        "type": "reclassified",
        "ticket_id": EMAIL_TICKET,
        "at": "2026-11-27T10:10:00Z",
        "severity": "urgent",
    }
    error = permanent(inbound("inbound.helpdesk", body))

    assert error.reason == "schema_violation"
    assert "severity" in error.detail


def test_invalid_phone_number_through_the_handler() -> None:
    body = {**example("phone.json"), "caller_number": "call me maybe"}

    assert permanent(inbound("inbound.phone", body)).reason == "invalid_phone_number"


def test_email_form_without_an_address() -> None:
    body = {**example("email.json"), "from": "Ana Ruiz"}

    assert permanent(inbound("inbound.email", body)).reason == "invalid_address"


@pytest.mark.parametrize(
    "body",
    [b"not a mime message at all\r\n", b"\xff\xfe\x00garbage", b""],
    ids=["text", "binary", "empty"],
)
def test_rfc822_garbage_is_invalid_mime(body: bytes) -> None:
    error = permanent(inbound("inbound.email", body, content_type="message/rfc822"))

    assert error.reason == "invalid_mime"


@pytest.mark.parametrize(
    "header", ["From", "Subject", "Message-ID", "In-Reply-To", "References", "X-Portal-Id"]
)
def test_rfc822_raw_8bit_header_gives_outgoing_or_permanent_error(header: str) -> None:
    headers = {
        "From": b"Ana Ruiz <ana@acme.example>",
        "Subject": b"Login outage",
        "Message-ID": b"<raw-2@mail.acme.example>",
        "In-Reply-To": b"<raw-0@mail.acme.example>",
        "References": b"<raw-0@mail.acme.example>",
        "X-Portal-Id": b"4411",
    }
    headers[header] = headers[header][:-1] + b"\xe9" + headers[header][-1:]  # raw Latin-1
    raw = b"".join(k.encode() + b": " + v + b"\r\n" for k, v in headers.items())

    outgoing_or_permanent(
        inbound("inbound.email", raw + b"\r\nbody\r\n", content_type="message/rfc822")
    )


# --- properties -----------------------------------------------------------------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=20), children, max_size=5)
    ),
    max_leaves=20,
)
ROUTE_AND_TYPE = st.sampled_from(
    [
        ("inbound.chat", "application/json"),
        ("inbound.email", "application/json"),
        ("inbound.email", "message/rfc822"),
        ("inbound.phone", "application/json"),
        ("inbound.helpdesk", "application/json"),
        ("inbound.helpdesk", None),
    ]
)


@settings(max_examples=200, deadline=None)
@given(route=ROUTE_AND_TYPE, value=JSON_VALUES)
def test_arbitrary_json_gives_outgoing_or_permanent_error(
    route: tuple[str, str | None], value: Any
) -> None:
    routing_key, content_type = route
    body = json.dumps(value).encode()

    outgoing_or_permanent(inbound(routing_key, body, content_type=content_type))


@settings(max_examples=200, deadline=None)
@given(route=ROUTE_AND_TYPE, body=st.binary(max_size=2048))
def test_arbitrary_bytes_give_outgoing_or_permanent_error(
    route: tuple[str, str | None], body: bytes
) -> None:
    routing_key, content_type = route

    outgoing_or_permanent(inbound(routing_key, body, content_type=content_type))


@settings(max_examples=200, deadline=None)
@given(
    routing_key=st.sampled_from(ROUTING_KEYS),
    base=st.sampled_from(["chat.json", "email.json", "phone.json", "helpdesk-first-response.json"]),
    value=JSON_VALUES,
    data=st.data(),
)
def test_example_with_one_field_replaced_gives_outgoing_or_permanent_error(
    routing_key: str, base: str, value: Any, data: st.DataObject
) -> None:
    body = example(base)
    key = data.draw(st.sampled_from(sorted(body)) | st.text(max_size=20), label="field")
    body[key] = value

    outgoing_or_permanent(inbound(routing_key, body))


OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
)
INSTANTS = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=OFFSETS
).map(datetime.isoformat)
IDS = st.text(min_size=1, max_size=40).filter(lambda s: s.strip() != "")
MESSAGES = st.lists(
    st.fixed_dictionaries(
        {
            "from": st.sampled_from(["visitor", "agent", "bot", "system"]),
            "at": INSTANTS,
            "text": st.text(max_size=300),
        }
    ),
    min_size=1,
    max_size=6,
)
CHAT_PAYLOADS = st.fixed_dictionaries(
    {
        "conversation_id": IDS,
        "portal_id": st.sampled_from([4411, 5522, 6633, 9999]) | st.integers(-(2**40), 2**40),
        "started_at": INSTANTS,
        "visitor": st.fixed_dictionaries(
            {},
            optional={
                "user_id": st.none() | st.sampled_from(["u-19", "u-20", "g-1"]) | IDS,
                "email": st.none()
                | st.sampled_from(["ana@acme.example", "BO@acme.example"])
                | st.emails(),
                "name": st.none() | st.text(max_size=40),
            },
        ),
        "messages": MESSAGES,
    },
    optional={
        "language": st.none() | st.sampled_from(["en", "nl", "de"]),
        "business_critical": st.booleans(),
        "widget": st.text(max_size=10),
    },
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payload=CHAT_PAYLOADS, message_id=st.none() | IDS)
def test_valid_chat_payloads_always_open_a_ticket(
    payload: dict[str, Any], message_id: str | None
) -> None:
    outputs = handle(inbound("inbound.chat", payload, message_id=message_id))
    events = events_of(outputs)
    visitor = [m for m in payload["messages"] if m["from"] == "visitor"]

    assert len(events) == (2 if len(visitor) > 1 else 1)
    opened = events[0]
    assert opened.type == "support.ticket.opened"
    ticket = TicketOpened.model_validate(opened.data).ticket
    assert ticket.channel == "chat"
    assert ticket.portal_id == payload["portal_id"]
    started = datetime.fromisoformat(payload["started_at"])
    if started > FIXED + timedelta(minutes=5):  # from the future: the clock starts now
        assert (ticket.created_at, ticket.reported_created_at) == (FIXED, started)
        assert ticket.timestamp_note == "future_beyond_skew"
    else:
        assert (ticket.created_at, ticket.reported_created_at) == (started, None)
        assert ticket.timestamp_note is None
    assert ticket.severity == (
        "business_critical" if payload.get("business_critical") else "standard"
    )
    assert ticket.premium is (payload["portal_id"] in (4411, 5522))
    assert opened.subject == ticket.ticket_id
    if message_id is not None:
        assert opened.correlationid == message_id
    if len(events) == 2:
        update = TicketUpdated.model_validate(events[1].data)
        assert events[1].routing_key == "ticket.updated"
        assert update.ticket_id == ticket.ticket_id
        assert update.text == clean_text(visitor[-1]["text"])  # what people read
    # deterministic: the same delivery again gives the same ids
    assert [o.message_id for o in handle(inbound("inbound.chat", payload))] == [
        e.id for e in events
    ]
