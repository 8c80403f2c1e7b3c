"""Bad input is never lost: each message ends as a canonical event or a dead letter
with a specific reason. Duplicates and unroutable messages are accounted for too."""

from __future__ import annotations

import json

from services.upstream import UpstreamPublisher
from tests.conftest import ROOT
from tests.integration.conftest import RunningService, wait_for
from tests.support.capture import Capture, queue_depth

INBOUND = ROOT / "examples" / "inbound"


def test_mixed_good_and_bad_messages_are_all_accounted_for(
    intake: RunningService, upstream: UpstreamPublisher, events: Capture, amqp_url: str, prefix: str
) -> None:
    chat = json.loads((INBOUND / "chat.json").read_text())
    good = [
        ("chat", json.dumps(chat | {"conversation_id": f"c-{i}"}).encode(), "application/json")
        for i in range(20)
    ]
    good.append(("phone", (INBOUND / "phone.json").read_bytes(), "application/json"))
    good.append(("helpdesk", (INBOUND / "helpdesk-acknowledged.json").read_bytes(), "text/json"))
    bad = {
        "invalid_json": ("chat", b'{"conversation_id": "c-1",', "application/json"),
        "schema_violation": ("chat", json.dumps({"portal_id": 4411}).encode(), "application/json"),
        "oversize": ("email", b'{"x": "' + b"a" * (1024 * 1024) + b'"}', "application/json"),
        "unsupported_content_type": ("chat", b"hello", "text/plain"),
        "invalid_mime": ("email", b"\x00\xff not a mail", "message/rfc822"),
        "invalid_phone_number": (
            "phone",
            json.dumps(
                json.loads((INBOUND / "phone.json").read_text()) | {"caller_number": "12"}
            ).encode(),
            "application/json",
        ),
    }
    bad_ticket = {"type": "resolved", "ticket_id": "T-123", "at": "2026-11-27T10:00:00Z"}
    bad["schema_violation_ticket_id"] = ("helpdesk", json.dumps(bad_ticket).encode(), "")
    for channel, body, ctype in [*good, *bad.values()]:
        upstream.publish(channel, body, ctype or "application/json")

    wait_for(
        lambda: intake.settled("acked") + intake.settled("dead_lettered") >= len(good) + len(bad)
    )
    received = events.take(len(good), settle=0.3)
    dead = Capture(amqp_url, f"{prefix}intake.inbound.dead").take(len(bad), settle=0.3)

    assert len(received) == len(good)
    assert len(dead) == len(bad)
    reasons = sorted(d.headers["x-error-reason"] for d in dead)
    expected = sorted(
        r if not r.startswith("schema_violation") else "schema_violation" for r in bad
    )
    assert reasons == expected
    for letter in dead:
        assert letter.headers["x-service"] == "intake"
        assert letter.headers["x-attempts"] == 1
        assert letter.headers["x-original-queue"] == f"{prefix}intake.inbound"
        assert letter.headers["x-first-failure-at"]
        assert letter.headers["x-error"]
    by_reason = {d.headers["x-error-reason"]: d for d in dead}
    assert by_reason["invalid_json"].body == bad["invalid_json"][1]  # the original, as sent
    assert "conversation_id" in by_reason["schema_violation"].headers["x-error"] or (
        "ticket_id" in by_reason["schema_violation"].headers["x-error"]
    )
    assert queue_depth(amqp_url, f"{prefix}intake.inbound") == 0


def test_duplicates_yield_one_event(
    intake: RunningService, upstream: UpstreamPublisher, events: Capture
) -> None:
    body = (INBOUND / "email.json").read_bytes()
    upstream.publish("email", body)
    upstream.publish("email", body)  # the upstream retried
    upstream.publish("email", body, message_id="another-id")  # and again, under a new id

    wait_for(lambda: intake.settled("acked") + intake.settled("duplicate") >= 3)
    received = events.take(1, settle=0.5)
    assert len(received) == 1
    assert intake.settled("duplicate") == 2


def test_unroutable_inbound_is_kept(
    intake: RunningService, upstream: UpstreamPublisher, amqp_url: str, prefix: str
) -> None:
    upstream.publish("fax", b'{"page": 1}', routing_key="inbound.fax")

    wait_for(lambda: queue_depth(amqp_url, f"{prefix}support.unrouted") == 1)
