"""sla_timer end to end on the real broker and each store: tickets published with pika
into support.inbound go through the running intake; the sla.* events are read back."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from schemas.events import CloudEvent
from services.intake.ids import ticket_id
from services.intake.main import IntakeSettings
from services.intake.main import bootstrap as intake_bootstrap
from services.runtime.app import ServiceRunner
from services.runtime.metrics import RuntimeMetrics
from services.sla_timer.main import SlaSettings
from services.sla_timer.main import bootstrap as sla_bootstrap
from services.upstream import UpstreamPublisher
from tests.conftest import ROOT
from tests.integration.conftest import RunningService
from tests.support.capture import Capture

EMAIL = json.loads((ROOT / "examples/inbound/email.json").read_text())
FAST = ROOT / "tests/fixtures/policy-fast.yaml"


def start_pipeline(settings: IntakeSettings, store_url: str, policy: Path | None) -> list:
    sla_settings = SlaSettings(
        AMQP_URL=settings.amqp_url,
        AMQP_PREFIX=settings.amqp_prefix,
        SLA_STORE_URL=store_url,
        POLICY_FILE=policy,
        SLA_TICK_S=0.1,
    )
    return [
        RunningService(ServiceRunner(spec, s, RuntimeMetrics.create())).start()
        for spec, s in (
            (intake_bootstrap(settings), settings),
            (sla_bootstrap(sla_settings), sla_settings),
        )
    ]


@pytest.fixture
def pipeline(
    settings: IntakeSettings, events: Capture, store_url: str, request: pytest.FixtureRequest
) -> Iterator[None]:
    policy = getattr(request, "param", None)
    services = start_pipeline(settings, store_url, policy)
    yield
    for service in services:
        service.stop()


def email(
    received: datetime, critical: bool = True, mid: str = "<f00d@mail.acme.example>"
) -> bytes:
    form = {"business_critical": critical, "user_id": "u-19"}
    return json.dumps(
        EMAIL | {"message_id": mid, "received_at": received.isoformat(), "form": form}
    ).encode()


def helpdesk(kind: str, at: datetime, **extra: str) -> bytes:
    tid = ticket_id("email", "<f00d@mail.acme.example>")
    return json.dumps({"type": kind, "ticket_id": tid, "at": at.isoformat(), **extra}).encode()


def sla_events(
    events: Capture, count: int, timeout: float = 15, settle: float = 0.5
) -> list[CloudEvent]:
    def sla() -> list[CloudEvent]:
        return [
            CloudEvent.model_validate(r.json())
            for r in events.received
            if r.routing_key.startswith("sla.")
        ]

    deadline = datetime.now(UTC) + timedelta(seconds=timeout)
    while len(sla()) < count and datetime.now(UTC) < deadline:
        events.take(len(events.received) + 1, timeout=0.5)
    events.take(0, timeout=0, settle=settle)
    return sla()


def test_a_ticket_gets_its_deadline_from_the_create_timestamp(
    pipeline: None, upstream: UpstreamPublisher, events: Capture
) -> None:
    created = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    upstream.publish("email", email(created))

    [scheduled] = sla_events(events, 1)
    assert scheduled.type == "support.sla.scheduled"
    assert scheduled.routing_key == "sla.scheduled.business_critical"
    assert datetime.fromisoformat(scheduled.data["due_at"]) == created + timedelta(minutes=30)
    assert datetime.fromisoformat(scheduled.data["warn_at"]) == created + timedelta(minutes=20)
    assert scheduled.data["guaranteed"] is True
    assert scheduled.data["policy_rule"] == "email-super-admin-business-critical"


def test_a_backdated_ticket_warns_then_breaches_within_seconds(
    pipeline: None, upstream: UpstreamPublisher, events: Capture
) -> None:
    created = datetime.now(UTC) - timedelta(minutes=31)
    upstream.publish("email", email(created))

    got = sla_events(events, 3, settle=1.0)
    assert [e.type for e in got] == [
        "support.sla.scheduled",
        "support.sla.warning",
        "support.sla.breached",
    ]
    breach = got[2]
    assert breach.routing_key == "sla.breached.business_critical"
    assert breach.data["lateness_ms"] >= 60_000  # it was already a minute past due
    assert len({e.id for e in got}) == 3


def test_a_first_response_in_time_is_met_and_never_breaches(
    settings: IntakeSettings, events: Capture, store_url: str, upstream: UpstreamPublisher
) -> None:
    services = start_pipeline(settings, store_url, FAST)
    try:
        created = datetime.now(UTC)
        upstream.publish("email", email(created))
        sla_events(events, 1, settle=0)
        upstream.publish(
            "helpdesk", helpdesk("first_response", created + timedelta(seconds=1), agent="sam")
        )
        got = sla_events(events, 2, settle=4.0)  # past the 3 s budget
    finally:
        for service in services:
            service.stop()
    assert [e.type for e in got] == ["support.sla.scheduled", "support.sla.met"]
    assert got[1].data["outcome"] == "met"


def test_reclassification_moves_the_deadline_from_the_original_start(
    pipeline: None, upstream: UpstreamPublisher, events: Capture
) -> None:
    created = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    upstream.publish("email", email(created))
    sla_events(events, 1, settle=0)
    upstream.publish(
        "helpdesk",
        helpdesk("reclassified", datetime.now(UTC), severity="standard", reason="one user"),
    )

    first, moved = sla_events(events, 2)
    assert first.routing_key == "sla.scheduled.business_critical"
    assert moved.routing_key == "sla.scheduled.standard"
    assert datetime.fromisoformat(moved.data["due_at"]) == created + timedelta(hours=1)
    assert moved.data["started_at"] == first.data["started_at"]


def test_exemption_stops_the_clock_without_a_breach(
    settings: IntakeSettings, events: Capture, store_url: str, upstream: UpstreamPublisher
) -> None:
    services = start_pipeline(settings, store_url, FAST)
    try:
        created = datetime.now(UTC)
        upstream.publish("email", email(created))
        sla_events(events, 1, settle=0)
        upstream.publish("helpdesk", helpdesk("exempted", created, reason="customer asked to wait"))
        got = sla_events(events, 2, timeout=5, settle=4.0)
    finally:
        for service in services:
            service.stop()
    assert [e.type for e in got] == ["support.sla.scheduled"]


def test_a_response_that_overtakes_its_ticket_is_applied_when_the_ticket_arrives(
    pipeline: None, upstream: UpstreamPublisher, events: Capture
) -> None:
    created = datetime.now(UTC) - timedelta(minutes=2)
    upstream.publish(
        "helpdesk", helpdesk("first_response", created + timedelta(minutes=1), agent="sam")
    )
    upstream.publish("email", email(created))

    got = sla_events(events, 2)
    assert [e.type for e in got] == ["support.sla.scheduled", "support.sla.met"]
    assert got[1].data["outcome"] == "met"


def test_fired_events_are_counted_with_their_lateness(
    settings: IntakeSettings, events: Capture, store_url: str, upstream: UpstreamPublisher
) -> None:
    services = start_pipeline(settings, store_url, FAST)
    try:
        upstream.publish("email", email(datetime.now(UTC) - timedelta(minutes=1)))  # late
        upstream.publish("email", email(datetime.now(UTC), mid="<on-time@mail.acme.example>"))
        sla_events(events, 6, settle=0.5)  # two of scheduled, warning, breached
        registry = services[1].runner.spec.workers[0].__self__.timer.metrics.registry
    finally:
        for service in services:
            service.stop()
    sample = registry.get_sample_value
    assert sample("sla_events_fired_total", {"kind": "breach"}) == 2
    assert sample("sla_events_fired_total", {"kind": "warning"}) == 2
    assert sample("sla_events_fired_late_total") == 2  # the backdated ticket's two
    assert sample("sla_fire_lateness_seconds_bucket", {"le": "1.0"}) == 2  # on time: < 1 s
