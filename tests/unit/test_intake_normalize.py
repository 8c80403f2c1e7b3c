"""Pure normalization: inbound payload models -> canonical CloudEvents (no broker)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter

from schemas.events import CloudEvent, TicketOpened, TicketUpdated
from schemas.inbound import ChatRequest, EmailForm, HelpdeskUpdate, PhoneRequest
from schemas.ticket import Ticket
from services.intake.accounts import AccountsDirectory
from services.intake.helpdesk import normalize_helpdesk
from services.intake.normalize import (
    Context,
    normalize_chat,
    normalize_email_form,
    normalize_phone,
)
from services.runtime.errors import PermanentError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "inbound"
DIRECTORY = AccountsDirectory.load(ROOT / "examples" / "accounts.yaml")
NOW = datetime(2026, 11, 27, 12, 0, 0, tzinfo=UTC)
CTX = Context(DIRECTORY, correlation_id="corr-1", now=NOW)
CUSTOMER_TIME = datetime(2026, 11, 27, 9, 58, 2, tzinfo=UTC)
TICKET_ID = re.compile(r"^T-(chat|email|phone)-[0-9a-f]{16}$")
HELPDESK = TypeAdapter[Any](HelpdeskUpdate)

# The helpdesk examples refer to the ticket opened by examples/inbound/email.json.
EMAIL_TICKET = "T-email-0207b44e3d661cc0"
CHAT_TICKET = "T-chat-b9338e72503a76a7"
PHONE_TICKET = "T-phone-35479b15eeed9595"


def example(name: str, **overrides: Any) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads((EXAMPLES / name).read_text(encoding="utf-8"))
    payload.update(overrides)
    return payload


def chat(**overrides: Any) -> list[CloudEvent]:
    return normalize_chat(ChatRequest.model_validate(example("chat.json", **overrides)), CTX)


def email(**overrides: Any) -> list[CloudEvent]:
    return normalize_email_form(EmailForm.model_validate(example("email.json", **overrides)), CTX)


def phone(**overrides: Any) -> list[CloudEvent]:
    return normalize_phone(PhoneRequest.model_validate(example("phone.json", **overrides)), CTX)


def helpdesk(payload: dict[str, Any]) -> list[CloudEvent]:
    return normalize_helpdesk(HELPDESK.validate_python(payload), "corr-1", NOW)


def ticket_of(event: CloudEvent) -> Ticket:
    data = event.parsed()
    assert isinstance(data, TicketOpened)
    return data.ticket


def update_of(event: CloudEvent) -> TicketUpdated:
    data = event.parsed()
    assert isinstance(data, TicketUpdated)
    return data


def hint_map(ticket: Ticket) -> dict[str, list[str]]:
    return {hint.signal: hint.phrases for hint in ticket.triage_hints}


# --- chat ---------------------------------------------------------------------------


def test_chat_example_opens_a_standard_ticket_for_a_super_admin() -> None:
    [event] = chat()
    ticket = ticket_of(event)

    assert event.routing_key == "ticket.opened.standard"
    assert event.type == "support.ticket.opened"
    assert event.source == "/premium-support/intake"
    assert event.subject == CHAT_TICKET
    assert event.correlationid == "corr-1"
    assert event.time == NOW
    assert ticket.ticket_id == CHAT_TICKET
    assert ticket.channel == "chat"
    assert ticket.portal_id == 4411
    assert ticket.account_name == "Acme Corp"
    assert ticket.premium is True
    assert ticket.timezone == "Europe/Amsterdam"
    assert ticket.submitter.role == "super_admin"
    assert ticket.submitter.user_id == "u-19"
    assert ticket.submitter.email == "ana@acme.example"
    assert ticket.submitter.name == "Ana Ruiz"
    assert ticket.severity == "standard"
    assert ticket.submitter_marked_critical is False
    assert ticket.subject == "Nobody on our team can log in since 9:50"
    assert ticket.text == "Nobody on our team can log in since 9:50"
    assert ticket.language == "en"
    assert ticket.created_at == CUSTOMER_TIME
    assert ticket.source == {"conversation_id": "c-7781", "extra": {}}


def test_chat_unmarked_outage_text_stays_standard_but_carries_a_login_outage_hint() -> None:
    # DESIGN section 2: intake recognises the signal but never silently upgrades.
    [event] = chat()
    ticket = ticket_of(event)

    assert ticket.severity == "standard"
    assert event.routing_key == "ticket.opened.standard"
    assert hint_map(ticket).get("login_outage") == ["Nobody on our team can log in"]


def test_chat_unmarked_outage_words_give_hints_not_severity() -> None:
    messages = [
        {
            "from": "visitor",
            "at": "2026-11-27T09:58:02Z",
            "text": "All of our users can't log in and the platform is down",
        }
    ]
    [event] = chat(messages=messages)
    ticket = ticket_of(event)

    assert ticket.severity == "standard"
    assert event.routing_key == "ticket.opened.standard"
    assert hint_map(ticket) == {
        "login_outage": ["All of our users can't log in"],
        "system_outage": ["platform is down"],
    }
    assert all(h.points_to == "business_critical" for h in ticket.triage_hints)


def test_chat_business_critical_flag_makes_it_business_critical() -> None:
    [event] = chat(business_critical=True)
    ticket = ticket_of(event)

    assert event.routing_key == "ticket.opened.business_critical"
    assert ticket.severity == "business_critical"
    assert ticket.submitter_marked_critical is True


def test_chat_snapshot_with_two_visitor_messages_opens_and_updates() -> None:
    messages = [
        {"from": "visitor", "at": "2026-11-27T09:58:02Z", "text": "Nobody can log in"},
        {"from": "agent", "at": "2026-11-27T09:59:00Z", "text": "Looking into it"},
        {"from": "visitor", "at": "2026-11-27T10:01:30Z", "text": "Still down for everyone"},
    ]
    opened, updated = chat(messages=messages)
    ticket = ticket_of(opened)
    update = update_of(updated)

    assert opened.routing_key == "ticket.opened.standard"
    assert updated.routing_key == "ticket.updated"
    assert updated.type == "support.ticket.updated"
    assert ticket.ticket_id == CHAT_TICKET
    assert ticket.created_at == CUSTOMER_TIME
    assert ticket.text == "Nobody can log in\nStill down for everyone"
    assert update.ticket_id == CHAT_TICKET
    assert updated.subject == CHAT_TICKET
    assert update.channel == "chat"
    assert update.at == datetime(2026, 11, 27, 10, 1, 30, tzinfo=UTC)
    assert update.text == "Still down for everyone"
    assert update.author == "ana@acme.example"
    assert opened.id != updated.id


def test_chat_snapshot_redelivered_gives_identical_ids() -> None:
    messages = [
        {"from": "visitor", "at": "2026-11-27T09:58:02Z", "text": "Nobody can log in"},
        {"from": "visitor", "at": "2026-11-27T10:01:30Z", "text": "Still down"},
    ]
    first = chat(messages=messages)
    second = chat(messages=messages)

    assert [e.id for e in first] == [e.id for e in second]
    assert first == second


def test_chat_later_snapshot_keeps_the_ticket_and_the_opened_event_id() -> None:
    [first] = chat()
    opened, updated = chat(
        messages=[
            {"from": "visitor", "at": "2026-11-27T09:58:02Z", "text": "Nobody can log in"},
            {"from": "visitor", "at": "2026-11-27T10:01:30Z", "text": "Still down"},
        ]
    )

    assert opened.subject == first.subject == CHAT_TICKET
    assert opened.id == first.id  # consumers drop the re-sent opened event by id
    assert updated.id != first.id


def test_chat_unknown_extra_fields_are_kept_in_source_extra() -> None:
    [event] = chat(widget_version="3.2.1", page_url="https://app.example/settings")
    ticket = ticket_of(event)

    assert ticket.source == {
        "conversation_id": "c-7781",
        "extra": {"widget_version": "3.2.1", "page_url": "https://app.example/settings"},
    }


def test_chat_unknown_nested_field_is_not_dropped() -> None:
    # DESIGN section 4: unknown extra fields are kept in the ticket's source block.
    visitor = {"user_id": "u-19", "email": "ana@acme.example", "locale": "nl-NL"}
    [event] = chat(visitor=visitor)
    ticket = ticket_of(event)

    assert "nl-NL" in json.dumps(ticket.source)


def test_unknown_fields_inside_list_items_and_optional_models_are_kept_by_path() -> None:
    messages = [
        {"from": "visitor", "at": "2026-11-27T09:58:02Z", "text": "Hi", "client": "ios"},
        {"from": "agent", "at": "2026-11-27T09:59:02Z", "text": "Hello"},
    ]
    [event] = chat(messages=messages)
    assert ticket_of(event).source["extra"] == {"messages": {"0": {"client": "ios"}}}
    [event] = email(form={"business_critical": False, "widget": "v2"})
    assert ticket_of(event).source["extra"] == {"form": {"widget": "v2"}}


# --- ids ------------------------------------------------------------------------------


def test_ticket_ids_have_the_documented_form() -> None:
    ids = [chat()[0].subject, email()[0].subject, phone()[0].subject]

    assert ids == [CHAT_TICKET, EMAIL_TICKET, PHONE_TICKET]
    assert all(TICKET_ID.match(tid) for tid in ids)


@pytest.mark.parametrize(
    ("make", "other"),
    [
        (chat, {"conversation_id": "c-7782"}),
        (email, {"message_id": "<beef@mail.acme.example>"}),
        (phone, {"call_id": "CA9f3"}),
    ],
    ids=["chat", "email", "phone"],
)
def test_same_input_same_ids_different_input_different_ids(make: Any, other: dict) -> None:
    a1, a2, b = make()[0], make()[0], make(**other)[0]

    assert a1.id == a2.id
    assert a1.subject == a2.subject
    assert ticket_of(a1).ticket_id == ticket_of(a2).ticket_id
    assert b.id != a1.id
    assert b.subject != a1.subject
    assert TICKET_ID.match(b.subject)


def test_event_time_is_now_but_ticket_created_at_is_the_customers() -> None:
    late = Context(DIRECTORY, correlation_id="corr-1", now=datetime(2026, 11, 28, tzinfo=UTC))
    payload = EmailForm.model_validate(example("email.json"))
    [event] = normalize_email_form(payload, late)

    assert event.time == datetime(2026, 11, 28, tzinfo=UTC)
    assert ticket_of(event).created_at == CUSTOMER_TIME
    # a later processing time does not change the event id
    assert event.id == email()[0].id


# --- email (JSON form) ----------------------------------------------------------------


def test_email_example_opens_business_critical_ticket() -> None:
    [event] = email()
    ticket = ticket_of(event)

    assert event.routing_key == "ticket.opened.business_critical"
    assert ticket.ticket_id == EMAIL_TICKET
    assert ticket.channel == "email"
    assert ticket.premium is True
    assert ticket.severity == "business_critical"
    assert ticket.submitter_marked_critical is True
    assert ticket.submitter.role == "super_admin"
    assert ticket.submitter.email == "ana@acme.example"
    assert ticket.submitter.name == "Ana Ruiz"
    assert ticket.submitter.user_id == "u-19"
    assert ticket.subject == "Login outage"
    assert ticket.created_at == CUSTOMER_TIME
    assert ticket.source == {"message_id": "<f00d@mail.acme.example>", "form": True, "extra": {}}
    assert hint_map(ticket)["system_outage"] == ["outage", "blocking our launch"]


def test_email_outage_words_without_the_form_mark_stay_standard() -> None:
    [event] = email(form={"business_critical": False, "user_id": "u-19"})
    ticket = ticket_of(event)

    assert event.routing_key == "ticket.opened.standard"
    assert ticket.severity == "standard"
    assert ticket.submitter_marked_critical is False
    assert "system_outage" in hint_map(ticket)


def test_email_without_form_block_is_standard() -> None:
    [event] = email(form=None)

    assert event.routing_key == "ticket.opened.standard"


def test_email_sender_matched_case_insensitively() -> None:
    [event] = email(**{"from": "Ana Ruiz <Ana.Ruiz@ACME.example>"}, form=None)
    assert ticket_of(event).submitter.role == "unknown"

    [event] = email(**{"from": "ANA@Acme.Example"}, form=None)
    ticket = ticket_of(event)
    assert ticket.submitter.role == "super_admin"
    assert ticket.submitter.email == "ana@acme.example"
    assert ticket.submitter.user_id is None


def test_email_without_portal_takes_the_portal_that_knows_the_sender() -> None:
    [event] = email(portal_id=None, **{"from": "Bo <bo@acme.example>"}, form=None)
    ticket = ticket_of(event)

    assert ticket.portal_id == 4411
    assert ticket.submitter.role == "user"
    assert ticket.premium is True


def test_email_reply_updates_the_root_ticket() -> None:
    [root] = email()
    by_in_reply_to = email(
        message_id="<r1@mail.acme.example>",
        in_reply_to="<f00d@mail.acme.example>",
        text="Any news? Still nobody can log in.",
        received_at="2026-11-27T10:20:00+01:00",
    )
    by_references = email(
        message_id="<r2@mail.acme.example>",
        in_reply_to="<r1@mail.acme.example>",
        references=["<f00d@mail.acme.example>", "<r1@mail.acme.example>"],
        text="Hello?",
    )

    [reply1], [reply2] = by_in_reply_to, by_references
    assert root.subject == EMAIL_TICKET
    for reply in (reply1, reply2):
        assert reply.routing_key == "ticket.updated"
        assert reply.subject == EMAIL_TICKET
        assert update_of(reply).ticket_id == EMAIL_TICKET
        assert update_of(reply).channel == "email"
        assert update_of(reply).author == "ana@acme.example"
    assert update_of(reply1).text == "Any news? Still nobody can log in."
    assert update_of(reply1).at == datetime(2026, 11, 27, 9, 20, tzinfo=UTC)
    assert len({root.id, reply1.id, reply2.id}) == 3
    assert (
        reply1.id
        == email(
            message_id="<r1@mail.acme.example>",
            in_reply_to="<f00d@mail.acme.example>",
            text="Any news? Still nobody can log in.",
            received_at="2026-11-27T10:20:00+01:00",
        )[0].id
    )


def test_email_blank_threading_headers_do_not_make_a_reply() -> None:
    # An upstream that serialises an empty References header as [""] sends a new
    # message, not a reply to a ticket whose root id is "".
    [event] = email(references=[""], in_reply_to=None)

    assert event.routing_key == "ticket.opened.business_critical"
    assert event.subject == EMAIL_TICKET


def test_email_html_only_form_gives_readable_text() -> None:
    html = (
        "<html><head><title>x</title><style>p {color: red}</style></head><body>"
        "<p>Hello&nbsp;team,</p><p>The <b>CMS</b> is unreachable for:</p>"
        "<ul><li>Marketing</li><li>Sales</li></ul>"
        "<script>track()</script><p>Regards,<br>Ana</p></body></html>"
    )
    [event] = email(text=None, html=html)
    ticket = ticket_of(event)

    assert ticket.text == (
        "Hello team,\n\nThe CMS is unreachable for:\n\n- Marketing\n- Sales\n\nRegards,\nAna"
    )
    assert hint_map(ticket)["cms_unreachable"] == ["CMS is unreachable"]


def test_email_unknown_extra_fields_are_kept_in_source_extra() -> None:
    [event] = email(mailbox="premium", spam_score=0.1)

    assert ticket_of(event).source["extra"] == {"mailbox": "premium", "spam_score": 0.1}


# --- phone ----------------------------------------------------------------------------


def test_phone_example_normalises_the_number_and_finds_the_super_admin() -> None:
    [event] = phone()
    ticket = ticket_of(event)

    assert event.routing_key == "ticket.opened.business_critical"
    assert ticket.ticket_id == PHONE_TICKET
    assert ticket.channel == "phone"
    assert ticket.call_kind == "callback_request"
    assert ticket.submitter.phone == "+31205550134"
    assert ticket.submitter.role == "super_admin"
    assert ticket.severity == "business_critical"
    assert ticket.language == "en"
    assert ticket.subject == "Callback request"
    assert ticket.created_at == CUSTOMER_TIME
    assert ticket.source == {"call_id": "CA9f2", "caller_number": "+31 20 555 0134", "extra": {}}
    assert hint_map(ticket)["cms_unreachable"] == ["whole organisation cannot reach the CMS"]


def test_phone_without_ivr_mark_is_standard() -> None:
    [event] = phone(ivr={"business_critical": False, "language": "en"})
    assert event.routing_key == "ticket.opened.standard"

    [event] = phone(ivr=None, kind="inbound_call")
    ticket = ticket_of(event)
    assert event.routing_key == "ticket.opened.standard"
    assert ticket.call_kind == "inbound_call"
    assert ticket.subject == "Inbound call"
    assert ticket.language is None


def test_phone_number_formats_normalise_to_e164() -> None:
    [event] = phone(caller_number="+31 (0)20-555 0134")
    assert ticket_of(event).submitter.phone == "+31205550134"

    payload = PhoneRequest.model_validate(example("phone.json", caller_number="020 555 0134"))
    [event] = normalize_phone(payload, CTX, region="NL")
    assert ticket_of(event).submitter.phone == "+31205550134"
    assert ticket_of(event).submitter.role == "super_admin"


@pytest.mark.parametrize("number", ["not a number", "020 555 0134", "+31 2", "+999 1234 5678"])
def test_phone_invalid_caller_number_is_permanent(number: str) -> None:
    with pytest.raises(PermanentError) as info:
        phone(caller_number=number)

    assert info.value.reason == "invalid_phone_number"
    assert number in info.value.detail


def test_phone_unknown_caller_and_extra_fields() -> None:
    [event] = phone(caller_number="+44 20 7946 0958", trunk="sip-2", ivr=None)
    ticket = ticket_of(event)

    assert ticket.submitter.phone == "+442079460958"
    assert ticket.submitter.role == "unknown"
    assert ticket.premium is True
    assert ticket.source["extra"] == {"trunk": "sip-2"}


def test_phone_by_caller_user_id_without_number() -> None:
    [event] = phone(caller_number=None, caller_user_id="u-20")
    ticket = ticket_of(event)

    assert ticket.submitter.phone is None
    assert ticket.submitter.role == "user"


# --- submitter roles and premium -------------------------------------------------------


@pytest.mark.parametrize(
    ("visitor", "role"),
    [
        ({"user_id": "u-19"}, "super_admin"),
        ({"email": "ANA@Acme.Example"}, "super_admin"),
        ({"user_id": "u-20", "email": "bo@acme.example"}, "user"),
        ({"email": "Bo@ACME.example"}, "user"),
        ({"user_id": "u-99", "email": "stranger@acme.example"}, "unknown"),
        ({"email": "hank@globex.example"}, "unknown"),  # Super Admin of another portal
        ({}, "unknown"),
    ],
)
def test_chat_submitter_role(visitor: dict[str, str], role: str) -> None:
    [event] = chat(visitor=visitor)
    assert ticket_of(event).submitter.role == role


def test_account_without_premium_support_is_still_a_ticket() -> None:
    [event] = chat(portal_id=6633, visitor={"user_id": "i-1", "email": "peter@initech.example"})
    ticket = ticket_of(event)

    assert event.routing_key == "ticket.opened.standard"
    assert ticket.premium is False
    assert ticket.portal_id == 6633
    assert ticket.account_name == "Initech (no Premium Support)"
    assert ticket.timezone == "UTC"
    assert ticket.submitter.role == "super_admin"


def test_unknown_portal_is_still_a_ticket() -> None:
    [event] = email(portal_id=9999)
    ticket = ticket_of(event)

    assert event.routing_key == "ticket.opened.business_critical"
    assert ticket.portal_id == 9999
    assert ticket.premium is False
    assert ticket.account_name is None
    assert ticket.timezone is None
    assert ticket.submitter.role == "unknown"


# --- helpdesk ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "routing_key", "event_type"),
    [
        (
            example("helpdesk-first-response.json"),
            "ticket.responded",
            "support.ticket.responded",
        ),
        (
            {
                "type": "reclassified",
                "ticket_id": EMAIL_TICKET,
                "at": "2026-11-27T10:10:00Z",
                "severity": "standard",
                "reason": "single user affected",
            },
            "ticket.reclassified",
            "support.ticket.reclassified",
        ),
        (
            {
                "type": "exempted",
                "ticket_id": EMAIL_TICKET,
                "at": "2026-11-27T10:11:00Z",
                "reason": "customer asked to wait",
            },
            "ticket.exempted",
            "support.ticket.exempted",
        ),
        (
            {"type": "resolved", "ticket_id": EMAIL_TICKET, "at": "2026-11-27T11:00:00Z"},
            "ticket.resolved",
            "support.ticket.resolved",
        ),
        (
            example("helpdesk-acknowledged.json"),
            "escalation.acknowledged",
            "support.escalation.acknowledged",
        ),
    ],
    ids=["first_response", "reclassified", "exempted", "resolved", "acknowledged"],
)
def test_helpdesk_update_routing_keys(
    payload: dict[str, Any], routing_key: str, event_type: str
) -> None:
    [event] = helpdesk(payload)

    assert event.routing_key == routing_key
    assert event.type == event_type
    assert event.subject == EMAIL_TICKET
    assert event.data["ticket_id"] == EMAIL_TICKET
    assert event.data["at"] == payload["at"]
    assert event.correlationid == "corr-1"
    assert event.time == NOW
    assert helpdesk(payload)[0].id == event.id


def test_helpdesk_event_fields() -> None:
    [responded] = helpdesk(example("helpdesk-first-response.json"))
    [acked] = helpdesk(example("helpdesk-acknowledged.json"))

    assert responded.data == {
        "ticket_id": EMAIL_TICKET,
        "at": "2026-11-27T10:05:00Z",
        "agent": "sam",
    }
    assert acked.data == {
        "ticket_id": EMAIL_TICKET,
        "at": "2026-11-27T10:01:00Z",
        "by": "oncall-kim",
    }


def test_helpdesk_different_updates_have_different_event_ids() -> None:
    base = example("helpdesk-first-response.json")
    later = {**base, "at": "2026-11-27T10:06:00Z"}
    other_ticket = {**base, "ticket_id": CHAT_TICKET}
    resolved = {"type": "resolved", "ticket_id": EMAIL_TICKET, "at": base["at"]}

    ids = {helpdesk(p)[0].id for p in (base, later, other_ticket, resolved)}
    assert len(ids) == 4
