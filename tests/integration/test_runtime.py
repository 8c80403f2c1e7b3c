"""The shared runtime against the real broker, with small hand-written handlers."""

from __future__ import annotations

from collections.abc import Iterator

import pika
import pytest

from services.intake.main import IntakeSettings
from services.runtime.app import ServiceRunner, ServiceSpec, declare_topology
from services.runtime.errors import TransientError
from services.runtime.messages import Inbound, Outgoing
from services.runtime.metrics import RuntimeMetrics
from services.upstream import UpstreamPublisher, pika_parameters
from tests.integration.conftest import RunningService, wait_for
from tests.support.capture import Capture, queue_depth


class FlakyDownstream:
    """Fails `fails` times for bodies starting with b'flaky', always for b'down'."""

    def __init__(self, fails: int) -> None:
        self.fails = fails
        self.calls: list[bytes] = []

    def __call__(self, inbound: Inbound) -> list[Outgoing]:
        self.calls.append(inbound.body)
        if inbound.body.startswith(b"down"):
            raise TransientError("SMTP timed out", reason="downstream_timeout")
        if inbound.body.startswith(b"flaky") and self.calls.count(inbound.body) <= self.fails:
            raise TransientError("broker hiccup", reason="downstream_timeout")
        body = inbound.body
        return [Outgoing("support.events", "ticket.updated", body, f"id-{body.decode()}")]


@pytest.fixture
def flaky(
    settings: IntakeSettings, events: Capture
) -> Iterator[tuple[FlakyDownstream, RunningService]]:
    handler = FlakyDownstream(fails=2)
    spec = ServiceSpec("intake", {"inbound": handler})
    service = RunningService(ServiceRunner(spec, settings, RuntimeMetrics.create())).start()
    yield handler, service
    service.stop()


def test_transient_failure_is_retried_then_succeeds(
    flaky: tuple[FlakyDownstream, RunningService], upstream: UpstreamPublisher, events: Capture
) -> None:
    handler, service = flaky
    upstream.publish("chat", b"flaky-1")

    received = events.take(1, settle=0.3)
    assert [r.message_id for r in received] == ["id-flaky-1"]
    assert handler.calls.count(b"flaky-1") == 3
    assert service.settled("retried") == 2


def test_retries_do_not_block_other_messages_and_are_bounded(
    flaky: tuple[FlakyDownstream, RunningService],
    upstream: UpstreamPublisher,
    events: Capture,
    settings: IntakeSettings,
    amqp_url: str,
    prefix: str,
) -> None:
    handler, _ = flaky
    upstream.publish("chat", b"down-1")
    for i in range(50):
        upstream.publish("chat", f"ok-{i}".encode())

    events.take(50)
    assert len(events.received) == 50  # all flowed while down-1 waited for its retries
    dead = Capture(amqp_url, f"{prefix}intake.inbound.dead").take(1, timeout=20)
    assert handler.calls.index(b"down-1") == 0
    assert handler.calls.count(b"down-1") == settings.max_attempts
    [letter] = dead
    assert letter.body == b"down-1"
    assert letter.headers["x-error-reason"] == "downstream_timeout"
    assert letter.headers["x-attempts"] == settings.max_attempts
    assert letter.headers["x-first-failure-at"] <= letter.headers["x-last-failure-at"]
    wait_for(lambda: queue_depth(amqp_url, f"{prefix}intake.inbound") == 0)


def test_the_broker_dead_letters_a_crash_loop_after_the_delivery_limit(
    amqp_url: str, prefix: str
) -> None:
    """A message that kills its consumer every time is requeued by the broker; the
    quorum queue's delivery-limit dead-letters it instead of looping forever."""
    settings = IntakeSettings(AMQP_URL=amqp_url, AMQP_PREFIX=prefix, DELIVERY_LIMIT=2)
    declare_topology(settings)
    with UpstreamPublisher(amqp_url, prefix) as upstream:
        upstream.publish("chat", b"poison")
    conn = pika.BlockingConnection(pika_parameters(amqp_url))
    try:
        ch = conn.channel()
        for _ in range(3):  # each time the consumer "crashes" before acking
            method, _, _ = ch.basic_get(f"{prefix}intake.inbound")
            assert method is not None
            ch.basic_nack(method.delivery_tag, requeue=True)
        wait_for(lambda: queue_depth(amqp_url, f"{prefix}intake.inbound.dead") == 1)
        assert queue_depth(amqp_url, f"{prefix}intake.inbound") == 0
    finally:
        conn.close()
