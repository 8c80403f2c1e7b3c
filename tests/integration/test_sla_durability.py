"""sla_timer across a kill -9 and with two replicas on one PostgreSQL: every due
warning and breach is emitted exactly once by id, and none is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pika
import pytest

from services.intake.main import IntakeSettings
from services.intake.main import bootstrap as intake_bootstrap
from services.runtime.app import ServiceRunner
from services.runtime.metrics import RuntimeMetrics
from services.upstream import UpstreamPublisher, pika_parameters
from tests.conftest import ROOT
from tests.integration.conftest import RunningService
from tests.integration.test_sla_timer import EMAIL, FAST
from tests.support.capture import Capture, queue_depth


def sla_timer_process(
    settings: IntakeSettings, store: str, policy: Path | None
) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "AMQP_URL": settings.amqp_url,
        "AMQP_PREFIX": settings.amqp_prefix,
        "SLA_STORE_URL": store,
        "SLA_TICK_S": "0.1",
        "LOG_LEVEL": "warning",
    }
    if policy is not None:
        env["POLICY_FILE"] = str(policy)
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "run", "sla-timer"], cwd=ROOT, env=env
    )


def consumers(settings: IntakeSettings) -> int:
    conn = pika.BlockingConnection(pika_parameters(settings.amqp_url))
    try:
        queue = f"{settings.amqp_prefix}sla_timer.events"
        return int(conn.channel().queue_declare(queue, passive=True).method.consumer_count)
    finally:
        conn.close()


def wait_consumers(settings: IntakeSettings, count: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if consumers(settings) >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"sla_timer consumers did not reach {count}")


@pytest.fixture
def intake(settings: IntakeSettings, events: Capture) -> Iterator[RunningService]:
    service = RunningService(
        ServiceRunner(intake_bootstrap(settings), settings, RuntimeMetrics.create())
    ).start()
    yield service
    service.stop()


def emails(count: int, created: datetime) -> list[bytes]:
    return [
        json.dumps(
            EMAIL
            | {
                "message_id": f"<t{i}@mail.acme.example>",
                "received_at": (created + timedelta(milliseconds=50 * i)).isoformat(),
            }
        ).encode()
        for i in range(count)
    ]


def by_ticket_and_type(events: Capture) -> dict[tuple[str, str], set[str]]:
    found: dict[tuple[str, str], set[str]] = defaultdict(set)
    for received in events.received:
        if received.routing_key.startswith("sla."):
            body = received.json()
            found[(body["subject"], body["type"])].add(body["id"])
    return found


def collect(
    events: Capture, expected: int, event_type: str, timeout: float
) -> dict[tuple[str, str], set[str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        events.take(len(events.received) + 1, timeout=0.5)
        found = by_ticket_and_type(events)
        if sum(1 for (_, t) in found if t == event_type) >= expected:
            break
    events.take(0, timeout=0, settle=1.0)
    return by_ticket_and_type(events)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_kill_9_mid_stream_loses_nothing_and_sends_nothing_twice(
    intake: RunningService, settings: IntakeSettings, events: Capture, store_url: str
) -> None:
    tickets = 60
    process = sla_timer_process(settings, store_url, FAST)
    try:
        wait_consumers(settings, 1)
        with UpstreamPublisher(settings.amqp_url, settings.amqp_prefix) as upstream:
            # Created just now: warnings at +2 s, breaches at +3 s, spread over 3 s.
            for body in emails(tickets, datetime.now(UTC)):
                upstream.publish("email", body)
        time.sleep(2.5)  # some have fired, some are due, some are not yet
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        time.sleep(1.0)  # more fall due while nobody runs
        process = sla_timer_process(settings, store_url, FAST)
        found = collect(events, tickets, "support.sla.breached", timeout=30)
    finally:
        process.terminate()
        process.wait(timeout=20)

    for kind in ("scheduled", "warning", "breached"):
        per_ticket = {t: ids for (t, ty), ids in found.items() if ty == f"support.sla.{kind}"}
        assert len(per_ticket) == tickets, f"{kind}: {len(per_ticket)} of {tickets} tickets"
        assert all(len(ids) == 1 for ids in per_ticket.values()), f"{kind} under two ids"
    assert queue_depth(settings.amqp_url, f"{settings.amqp_prefix}sla_timer.events") == 0


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_two_replicas_on_postgresql_breach_each_ticket_exactly_once(
    intake: RunningService, settings: IntakeSettings, events: Capture, store_url: str
) -> None:
    tickets = 1000
    replicas = [sla_timer_process(settings, store_url, None) for _ in range(2)]
    try:
        wait_consumers(settings, 2)
        with UpstreamPublisher(settings.amqp_url, settings.amqp_prefix) as upstream:
            for body in emails(tickets, datetime.now(UTC) - timedelta(minutes=40)):
                upstream.publish("email", body)
        found = collect(events, tickets, "support.sla.breached", timeout=90)
    finally:
        for replica in replicas:
            replica.terminate()
        for replica in replicas:
            replica.wait(timeout=20)

    breaches = [r for r in events.received if r.routing_key.startswith("sla.breached")]
    per_ticket = {t: ids for (t, ty), ids in found.items() if ty == "support.sla.breached"}
    assert len(per_ticket) == tickets
    assert len(breaches) == tickets  # not one duplicate delivery, let alone a second id


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_second_replica_on_sqlite_waits_instead_of_sharing_the_file(
    settings: IntakeSettings, events: Capture, store_url: str
) -> None:
    first = sla_timer_process(settings, store_url, None)
    second = sla_timer_process(settings, store_url, None)
    try:
        wait_consumers(settings, 1)
        time.sleep(3)  # the second has had time to start, had it not waited
        assert consumers(settings) == 1
        assert second.poll() is None  # still alive: waiting for the lock, not crashed
        first.terminate()
        first.wait(timeout=20)
        wait_consumers(settings, 1)  # the second takes over once the first is gone
    finally:
        for process in (first, second):
            process.terminate()
            process.wait(timeout=20)
