"""`publish --now` and `publish`'s preview of the ticket id; the HTTP sink's printout."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from services.operator.preview import intake_outcome
from services.operator.sink import describe
from services.upstream import move_to_now
from tests.conftest import ROOT

NOW = datetime(2026, 12, 2, 5, 0, 0, tzinfo=UTC)
INBOUND = ROOT / "examples" / "inbound"


def test_now_moves_every_timestamp_by_the_same_amount() -> None:
    chat = {
        "conversation_id": "c-1",
        "started_at": "2026-11-27T09:58:02Z",
        "messages": [
            {"from": "visitor", "at": "2026-11-27T09:58:02Z", "text": "down"},
            {"from": "visitor", "at": "2026-11-27T11:00:02+01:00", "text": "still down"},
        ],
        "note": "not a time: 2026-11-27",
    }
    moved = json.loads(move_to_now(json.dumps(chat).encode(), "application/json", NOW))

    assert moved["started_at"] == "2026-12-02T05:00:00Z"
    assert moved["messages"][0]["at"] == "2026-12-02T05:00:00Z"
    # Two minutes after the start, written in its own offset.
    assert moved["messages"][1]["at"] == "2026-12-02T06:02:00+01:00"
    assert moved["note"] == chat["note"]


def test_now_rewrites_a_raw_emails_date_header_only() -> None:
    raw = (INBOUND / "email-raw.eml").read_bytes()
    moved = move_to_now(raw, "message/rfc822", NOW)

    stamp = format_datetime(NOW).encode()  # Wed, 02 Dec 2026 05:00:00 +0000
    assert b"\r\nDate: " + stamp + b"\r\n" in moved  # the file's line ends kept
    assert b"Thu, 27 Nov 2026 08:58:41 +0000 (UTC)" in moved  # a Received header, kept
    assert moved.replace(stamp, b"Thu, 27 Nov 2026 08:58:37 +0000") == raw


def test_now_refuses_a_body_it_cannot_read() -> None:
    with pytest.raises(ValueError, match="not JSON"):
        move_to_now(b"{broken", "application/json", NOW)
    with pytest.raises(ValueError, match="no Date header"):
        move_to_now(b"Subject: hi\n\nbody", "message/rfc822", NOW)


def test_publish_tells_the_ticket_id_intake_will_give() -> None:
    body = (INBOUND / "email.json").read_bytes()
    expected = "T-email-" + hashlib.sha256(b"email:<f00d@mail.acme.example>").hexdigest()[:16]

    assert intake_outcome("email", body, "application/json") == f"ticket {expected}"
    ack = (INBOUND / "helpdesk-acknowledged.json").read_bytes()
    assert intake_outcome("helpdesk", ack, "application/json") == f"ticket {expected}"
    assert intake_outcome("chat", b'{"messages": 1}', "application/json") == (
        "intake will dead-letter it (schema_violation)"
    )


def test_the_sink_checks_signatures_masks_routing_keys_and_escapes_text() -> None:
    raw = json.dumps({"routing_key": "R0SECRET", "summary": "a\u202eb\x1b[31m"}).encode()
    good = "sha256=" + hmac.new(b"s3", b"1700000000." + raw, hashlib.sha256).hexdigest()
    headers = {
        "x-notification-key": "T-email-1:opened:1:kim:paging_webhook",
        "x-signature": good,
        "x-signature-timestamp": "1700000000",
    }

    out = describe("POST", "/pagerduty/kim", headers, raw, b"s3")
    assert out.startswith("POST /pagerduty/kim\n")
    assert "X-Notification-Key: T-email-1:opened:1:kim:paging_webhook" in out
    assert "signature valid" in out
    assert "R0SECRET" not in out and '"routing_key": "***"' in out
    assert "\u202e" not in out and "\x1b" not in out and "\\u202e" in out
    assert "signature INVALID" in describe("POST", "/", headers, raw, b"other")
    assert "give --secret-env" in describe("POST", "/", headers, raw, None)
