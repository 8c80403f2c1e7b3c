"""A chat whose visitor name and message carry bidi overrides and zero-width characters,
published with pika as the chat widget would: the ticket and the page leave without them."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pika

from services.common.text import REMOVED
from services.notifier.main import NotifierSettings
from services.upstream import pika_parameters
from tests.integration.conftest import RunningService
from tests.integration.test_notifier import notifier_env, run_notifier  # noqa: F401 - fixture
from tests.integration.test_notifier_channels import Inbox, Server, serve, smtp  # noqa: F401
from tests.support.capture import Capture

RLO, PDF, ZWSP, ZWJ, LRI, PDI, BOM = (
    "\u202e",
    "\u202c",
    "\u200b",
    "\u200d",
    "\u2066",
    "\u2069",
    "\ufeff",
)


def chat(now: datetime) -> bytes:
    at = (now - timedelta(minutes=1)).isoformat()
    return json.dumps(
        {
            "conversation_id": f"c-bidi-{time.monotonic_ns()}",
            "portal_id": 4411,
            "started_at": at,
            "business_critical": True,
            "visitor": {"user_id": "u-19", "email": "ana@acme.example", "name": f"Ana {RLO}ziuR"},
            "messages": [
                {
                    "from": "visitor",
                    "at": at,
                    "text": f"Nobody{ZWSP} on our {LRI}team{PDI} can log{ZWJ} in{BOM}{PDF}\u2028"
                    "since 9:50\x1b[31m",
                }
            ],
        },
        ensure_ascii=True,  # the characters travel as \\u escapes, as JSON allows
    ).encode()


def publish_chat(url: str, prefix: str, body: bytes) -> None:
    conn = pika.BlockingConnection(pika_parameters(url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(
            f"{prefix}support.inbound",
            "inbound.chat",
            body,
            pika.BasicProperties(content_type="application/json", delivery_mode=2),
        )
    finally:
        conn.close()


def controls_in(value: Any) -> list[str]:
    """The removed characters in any string of a parsed JSON document."""
    if isinstance(value, dict):
        return controls_in(list(value.items()))
    if isinstance(value, list | tuple):
        return [found for item in value for found in controls_in(item)]
    return [hex(ord(ch)) for ch in value if ch in REMOVED] if isinstance(value, str) else []


def test_a_chat_with_bidi_and_zero_width_characters_is_paged_without_them(
    notifier_env: tuple[NotifierSettings, Server, Server, tuple[Inbox, int]],  # noqa: F811
    intake: RunningService,
    events: Capture,
) -> None:
    settings, kim, _mira, _smtp = notifier_env
    notifier = run_notifier(settings)
    try:
        publish_chat(settings.amqp_url, settings.amqp_prefix, chat(datetime.now(UTC)))
        deadline = time.monotonic() + 20
        while not kim.requests and time.monotonic() < deadline:
            time.sleep(0.05)
        assert kim.requests, "kim was not paged"
    finally:
        notifier.stop()

    page = kim.requests[0].json()
    assert controls_in(page) == []
    details = page["payload"]
    assert "Nobody on our team can log in since 9:50[31m" in details["summary"]
    assert details["custom_details"]["submitter"] == "Ana ziuR <ana@acme.example>"

    (opened,) = [e for e in events.take(1) if e.routing_key == "ticket.opened.business_critical"]
    ticket = opened.json()["data"]["ticket"]
    assert ticket["submitter"]["name"] == "Ana ziuR"
    assert ticket["text"] == "Nobody on our team can log in\nsince 9:50[31m"
    assert controls_in(ticket) == []
