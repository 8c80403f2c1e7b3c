"""Bidi, zero-width and control characters: removed at intake and again at rendering."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, is_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.events import TicketOpened, TicketUpdated
from schemas.inbound import ChatRequest
from schemas.ticket import Submitter, TriageHint
from services.common.text import REMOVED, clean_text, strip_controls
from services.intake.accounts import AccountsDirectory
from services.intake.normalize import Context, normalize_chat
from services.notifier.decisions import Notification
from services.notifier.notes import TicketNotes, TicketSummary
from services.notifier.oncall import parse_oncall
from services.notifier.render import (
    render_chat,
    render_console,
    render_digest,
    render_email,
    render_generic,
    render_pagerduty,
)
from tests.conftest import ROOT

RLO, PDF, ZWSP, LRI, PDI, BOM = "\u202e", "\u202c", "\u200b", "\u2066", "\u2069", "\ufeff"
TID = "T-chat-0207b44e3d661cc0"
T0 = datetime(2026, 11, 27, 9, 58, 2, tzinfo=UTC)
ONCALL = parse_oncall(
    """\
people:
  - id: kim
    name: Kim
    email: kim@support.example
    paging_webhook: {url: "https://pager.example/v2/enqueue", routing_key: RK-KIM}
  - {id: mira, name: Mira, email: mira@support.example}
schedules:
  primary: {timezone: UTC, rotation: [kim], handoff: {weekday: mon, hour: 9}, start: 2026-01-05}
escalation:
  - {level: 1, schedules: [primary]}
  - {level: 2, people: [mira]}
team_channel: {chat_webhook: "https://chat.example/hooks/team", name: Support}
link_template: "https://helpdesk.example/tickets/{ticket_id}?portal={portal_id}"
"""
)

# Ordinary text with the removed characters mixed in, often several in a row.
hostile = st.text(
    alphabet=st.one_of(st.sampled_from(sorted(REMOVED)), st.characters(codec="utf-8")),
    max_size=60,
)


def has_controls(text: str) -> bool:
    return any(ch in REMOVED for ch in text)


# --- the function --------------------------------------------------------------------


def test_every_listed_code_point_is_removed_and_tab_and_newline_stay() -> None:
    listed = [*range(0x202A, 0x202F), *range(0x2066, 0x206A), *range(0x200B, 0x2010)]
    listed += [0x2028, 0x2029, 0xFEFF, 0x00, 0x07, 0x1B, 0x7F, 0x85, 0x9B]
    for code in listed:
        assert chr(code) in REMOVED
        assert clean_text(f"a{chr(code)}b") in ("ab", "a\nb"), hex(code)
    assert clean_text("tab\there\nnext") == "tab\there\nnext"


def test_line_ends_become_line_feeds_and_the_rest_goes() -> None:
    assert clean_text("one\r\ntwo\rthree\u2028four\u2029five\x85six") == (
        "one\ntwo\nthree\nfour\nfive\nsix"
    )
    assert clean_text(f"Ana {RLO}ziuR{PDF}") == "Ana ziuR"
    assert clean_text(f"log{ZWSP}in {LRI}down{PDI}{BOM}") == "login down"


def test_ordinary_text_is_left_as_it_is() -> None:
    text = "Ünïcødé — 日本語, emoji 🚨, Arabic مرحبا, Hebrew שלום"
    assert clean_text(text) == text
    assert strip_controls(text) == text


@given(hostile)
def test_no_cleaned_text_contains_a_removed_character(text: str) -> None:
    cleaned = clean_text(text)
    assert not has_controls(cleaned)
    assert clean_text(cleaned) == cleaned  # idempotent
    assert not has_controls(strip_controls(text))
    assert "\n" not in strip_controls(text.replace("\n", ""))  # never adds a line


def test_strip_controls_walks_dicts_lists_and_dataclasses() -> None:
    value: Any = {f"k{ZWSP}": [f"a{RLO}", (f"b{BOM}", 3)], "n": None}
    assert strip_controls(value) == {"k": ["a", ("b", 3)], "n": None}


# --- intake --------------------------------------------------------------------------


def test_intake_removes_them_from_subject_name_and_text_but_keeps_the_source() -> None:
    directory = AccountsDirectory.load(ROOT / "examples" / "accounts.yaml")
    chat = ChatRequest.model_validate(
        {
            "conversation_id": "c-bidi",
            "portal_id": 4411,
            "started_at": "2026-11-27T09:58:02Z",
            "visitor": {"user_id": "u-19", "name": f"Ana {RLO}ziuR{PDF}", "nick": f"x{RLO}"},
            "messages": [
                {"from": "visitor", "at": "2026-11-27T09:58:02Z", "text": f"Nobody{ZWSP} can"},
                {"from": "visitor", "at": "2026-11-27T09:59:02Z", "text": f"log{ZWSP}in\r\n!"},
            ],
        }
    )
    opened, updated = normalize_chat(chat, Context(directory, "corr", T0))
    ticket = opened.parsed()
    assert isinstance(ticket, TicketOpened)
    assert ticket.ticket.submitter.name == "Ana ziuR"
    assert ticket.ticket.subject == "Nobody can"
    assert ticket.ticket.text == "Nobody can\nlogin\n!"
    update = updated.parsed()
    assert isinstance(update, TicketUpdated) and update.text == "login\n!"
    # Unknown upstream fields are kept as sent; nothing renders the source block.
    assert ticket.ticket.source["extra"] == {"visitor": {"nick": f"x{RLO}"}}


# --- the notifier's rendering, whatever the event carried ----------------------------


@st.composite
def ticket_notes(draw: Any) -> TicketNotes:
    summary = TicketSummary(
        account_name=draw(hostile),
        portal_id=4411,
        account_timezone="UTC",
        channel="chat",
        submitter=Submitter(
            role="super_admin", user_id=draw(hostile), email=draw(hostile), name=draw(hostile)
        ),
        subject=draw(hostile),
        excerpt=draw(hostile),
        triage_hints=(
            TriageHint(
                signal=draw(hostile), points_to="business_critical", phrases=[draw(hostile)]
            ),
        ),
        created_at=T0,
    )
    return TicketNotes(
        ticket_id=TID,
        severity="business_critical",
        due_at=T0 + timedelta(minutes=30),
        acknowledged_by=draw(st.none() | hostile),
        summary=summary,
    )


def notification(channel: str, person: str = "kim") -> Notification:
    return Notification.model_validate(
        {
            "ticket_id": TID,
            "reason": "opened",
            "level": 1,
            "person": person,
            "channel": channel,
            "action": "trigger",
            "dedup_key": f"{TID}:opened" if channel == "paging_webhook" else None,
        }
    )


def strings(value: Any) -> Iterator[str]:
    """Every string in a rendered message (keys too), whatever its structure."""
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from strings(key)
            yield from strings(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from strings(item)


@settings(max_examples=150, deadline=None)
@given(notes=ticket_notes())
def test_no_rendered_message_contains_a_removed_character(notes: TicketNotes) -> None:
    now = T0 + timedelta(minutes=5)
    outputs = [
        render_email(notification("email"), notes, ONCALL, now),
        render_chat(notification("chat_webhook"), notes, ONCALL, now),
        render_pagerduty(notification("paging_webhook"), notes, ONCALL, now),
        render_generic(notification("generic_webhook"), notes, ONCALL, now),
        render_console(notification("console"), notes, ONCALL, now),
        render_digest([(notification("team_digest", "team"), notes)], ONCALL, now),
    ]
    for output in outputs:
        for text in strings(output):
            assert not has_controls(text), [hex(ord(ch)) for ch in text if ch in REMOVED]
    email = outputs[0]
    assert "\n" not in email.subject  # still one line


@settings(max_examples=500)
@given(st.one_of(hostile, st.text(st.characters(max_codepoint=0x7F))))
def test_the_ascii_shortcut_changes_no_result(text: str) -> None:
    from services.common import text as cleaning

    expected = cleaning._STRIP.sub("", cleaning._LINE_ENDS.sub("\n", text))
    assert clean_text(text) == expected
    assert strip_controls(text) == cleaning._STRIP.sub("", text)
