"""Intake's look at raw bytes: which requests go first in the read-ahead window.

The look must agree with the normaliser on every example and fixture (what it says is
business-critical, and nothing else, is handled first) and never match a mention of
the flag inside a message's text.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.intake.urgency import may_page
from services.runtime.arrivals import Arrivals
from services.runtime.messages import Inbound
from tests.unit.test_intake_handlers import EXAMPLES, ROOT, example, handle, inbound

EMAILS = sorted((ROOT / "tests" / "fixtures" / "emails").glob("*.eml"))


def _severity(message: Inbound) -> str | None:
    for out in handle(message):
        data: dict[str, Any] = json.loads(out.body)["data"]
        if "ticket" in data:
            return str(data["ticket"]["severity"])
    return None


def _raw_email(path: Path) -> Inbound:
    return inbound("inbound.email", path.read_bytes(), content_type="message/rfc822")


@pytest.mark.parametrize("path", EMAILS, ids=lambda p: p.name)
def test_raw_emails_agree_with_the_normaliser(path: Path) -> None:
    message = _raw_email(path)
    assert may_page(message) == (_severity(message) == "business_critical")


@pytest.mark.parametrize(
    ("routing_key", "name"),
    [
        ("inbound.chat", "chat.json"),
        ("inbound.email", "email.json"),
        ("inbound.phone", "phone.json"),
    ],
)
@pytest.mark.parametrize("marked", [True, False])
def test_json_requests_agree_with_the_normaliser(routing_key: str, name: str, marked: bool) -> None:
    body = example(name)
    if routing_key == "inbound.chat":
        body["business_critical"] = marked
    elif routing_key == "inbound.email":
        body["form"] = {**(body.get("form") or {}), "business_critical": marked}
    else:
        body["ivr"] = {**(body.get("ivr") or {}), "business_critical": marked}
    message = inbound(routing_key, body)
    assert _severity(message) == ("business_critical" if marked else "standard")
    assert may_page(message) is marked


def test_a_mention_of_the_flag_in_the_text_is_not_a_mark() -> None:
    body = example("chat.json")
    body["messages"][0]["text"] = 'our config says "business_critical": true, is that ok?'
    message = inbound("inbound.chat", body)
    assert _severity(message) == "standard"
    assert not may_page(message)


def test_an_acknowledgement_goes_first_and_a_first_response_does_not() -> None:
    assert may_page(inbound("inbound.helpdesk", example("helpdesk-acknowledged.json")))
    assert not may_page(inbound("inbound.helpdesk", example("helpdesk-first-response.json")))


def test_the_mime_flag_is_read_from_the_headers_only() -> None:
    raw = (EXAMPLES / "email-raw.eml").read_bytes().replace(b"\r\n", b"\n")
    head, _, body = raw.partition(b"\n\n")
    in_body = head + b"\n\n" + b"X-Business-Critical: yes\n" + body
    assert not may_page(inbound("inbound.email", in_body, content_type="message/rfc822"))
    marked = b"X-Business-Critical: yes\n" + raw
    assert may_page(inbound("inbound.email", marked, content_type="message/rfc822"))


class _D:
    def __init__(self, n: int, urgent: bool) -> None:
        body = b'{"business_critical": true}' if urgent else b"{}"
        self.n = n
        self.inbound = Inbound(body=body, routing_key="inbound.chat", exchange="")


@given(st.lists(st.booleans(), max_size=400), st.integers(1, 50))
def test_turns_give_every_urgent_delivery_first_then_the_rest_in_order(
    marks: list[bool], turn: int
) -> None:
    arrivals: Arrivals[_D] = Arrivals(may_page, turn_size=turn)
    for n, urgent in enumerate(marks):
        arrivals.add(_D(n, urgent))
    first_urgent, first_others = arrivals.next_turn()
    assert [d.n for d in first_urgent] == [n for n, u in enumerate(marks) if u]
    handed = [d.n for d in first_others]
    while len(arrivals):
        urgent, others = arrivals.next_turn()
        assert not urgent and len(others) <= turn
        handed += [d.n for d in others]
    assert handed == [n for n, u in enumerate(marks) if not u]  # none lost, none twice
    assert not arrivals.full()


def test_without_a_test_a_turn_takes_everything_in_order() -> None:
    arrivals: Arrivals[_D] = Arrivals(None, turn_size=2)
    for n in range(5):
        arrivals.add(_D(n, n == 3))
    urgent, others = arrivals.next_turn()
    assert (urgent, [d.n for d in others]) == ([], [0, 1, 2, 3, 4])


def test_the_byte_budget_stops_reading_ahead() -> None:
    arrivals: Arrivals[_D] = Arrivals(may_page, budget_bytes=10)
    arrivals.add(_D(0, False))
    assert not arrivals.full()
    arrivals.add(_D(1, True))
    assert arrivals.full()
    arrivals.next_turn()
    assert not arrivals.full()
