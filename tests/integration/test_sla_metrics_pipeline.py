"""Every clock of a ticket end to end, on the real broker and each store: an email
published with pika opens the ticket, helpdesk updates answer it, wait on the customer
and resolve it, a reply by mail is the customer's follow-up; the sla.* events read back
from support.events name their metric and round, and `sla explain` shows every clock.
Policy: tests/fixtures/policy-metrics.yaml (next reply 2 s, resolution 8 h, 24/7)."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import UTC, datetime, timedelta

from schemas.events import CloudEvent
from services.intake.main import IntakeSettings
from services.upstream import UpstreamPublisher
from tests.conftest import ROOT
from tests.integration.test_sla_timer import email, helpdesk, sla_events, start_pipeline
from tests.support.capture import Capture

POLICY = ROOT / "tests/fixtures/policy-metrics.yaml"


def reply(received: datetime) -> bytes:
    """The customer answers the agent's mail: a new message in the same thread."""
    body = json.loads(email(received))
    return json.dumps(
        body
        | {"message_id": "<f00d-2@mail.acme.example>", "in_reply_to": "<f00d@mail.acme.example>"}
    ).encode()


def by_metric(got: list[CloudEvent]) -> list[tuple[str, str, int]]:
    # first_response's events carry neither field (as before metrics): the defaults
    return [
        (e.type.rsplit(".", 1)[-1], e.data.get("metric", "first_response"), e.data.get("round", 1))
        for e in got
    ]


def test_every_clock_of_a_ticket_with_a_pause_and_a_round_that_runs_out(
    settings: IntakeSettings,
    events: Capture,
    store_url: str,
    upstream: UpstreamPublisher,
) -> None:
    services = start_pipeline(settings, store_url, POLICY)
    try:
        created = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
        upstream.publish("email", email(created))
        opened = sla_events(events, 2, settle=0)
        upstream.publish("helpdesk", helpdesk("first_response", created, agent="sam"))
        answered = sla_events(events, 4, settle=0)  # met, and periodic updates start
        upstream.publish("email", reply(datetime.now(UTC)))
        # next reply round 1 is scheduled, runs out after 2 s: a missed target
        breached = sla_events(events, 6, settle=0, timeout=20)
        # In the past: intake takes a helpdesk time later than its clock as its now.
        paused_at = created + timedelta(minutes=2)
        upstream.publish("helpdesk", helpdesk("waiting_on_customer", paused_at))
        upstream.publish("helpdesk", helpdesk("resumed", paused_at + timedelta(minutes=3)))
        resumed = sla_events(events, 8, settle=0)
        upstream.publish("helpdesk", helpdesk("resolved", paused_at + timedelta(minutes=40)))
        got = sla_events(events, 9, settle=1.0)
    finally:
        for service in services:
            service.stop()

    assert by_metric(opened) == [
        ("scheduled", "first_response", 1),
        ("scheduled", "resolution", 1),
    ]
    assert by_metric(answered[2:]) == [
        ("met", "first_response", 1),
        ("scheduled", "periodic_update", 1),
    ]
    assert by_metric(breached[4:]) == [
        ("scheduled", "next_reply", 1),
        ("breached", "next_reply", 1),
    ]
    assert breached[5].routing_key == "sla.breached.business_critical"
    # The wait paused resolution and periodic updates; resuming gives 3 minutes back.
    moved = {e.data.get("metric", "first_response"): e for e in resumed[6:]}
    assert set(moved) == {"resolution", "periodic_update"}
    due = datetime.fromisoformat(moved["resolution"].data["due_at"])
    assert due == created + timedelta(hours=8, minutes=3)
    assert by_metric(got[8:]) == [("met", "resolution", 1)]
    assert got[8].data["outcome"] == "met"
    assert len({e.id for e in got}) == len(got)

    env = os.environ | {"SLA_STORE_URL": store_url, "POLICY_FILE": str(POLICY), "COLUMNS": "200"}
    tid = opened[0].subject
    shown = subprocess.run(
        [str(ROOT / ".venv/bin/premium-support"), "sla", "explain", tid],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    for title in (
        "first response",
        "next reply, round 1",
        "periodic update, round 1",
        "resolution",
    ):
        assert f"SLA clock {tid}: {title}" in shown.stdout
    assert "waiting on the customer" in shown.stdout  # the pause, in resolution's segments
