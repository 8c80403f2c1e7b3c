"""Over TLS (`amqps://`), a lone request is handled when it arrives, not at the next
heartbeat.

py-amqp reads each frame's exact length from the SSL socket, so the rest of a TLS
record (a delivery's header and body, a batch of confirms) waits decrypted inside the
SSL object, where select() on the socket does not see it. The consume loop used to sleep
on the socket then: a page-worthy request waited for the broker's next heartbeat (up to
15 s with the default 30 s heartbeat), and its ack for the next bytes on the publisher's
connection. A private node gets a TLS listener with a certificate made for the test;
intake talks TLS to it, the upstream publisher and the capture talk plain AMQP.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from services.intake.main import IntakeSettings, bootstrap
from services.runtime.app import ServiceRunner, declare_topology
from services.runtime.metrics import RuntimeMetrics
from services.upstream import UpstreamPublisher
from tests.integration.conftest import ACCOUNTS, RunningService, short_chat, wait_for
from tests.support.broker import new_prefix
from tests.support.capture import Capture
from tests.support.rabbit_node import RabbitNode, private_rabbit

LONE_REQUESTS = 6
GAP_S = 0.4  # between requests: each one arrives alone on an idle connection


@pytest.fixture(scope="module")
def tls_node() -> Iterator[RabbitNode]:
    saved = os.environ.get("SSL_CERT_FILE")
    with private_rabbit(tls=True) as node:
        assert node.ca_file is not None
        os.environ["SSL_CERT_FILE"] = str(node.ca_file)  # OpenSSL's default trust store
        try:
            yield node
        finally:
            if saved is None:
                os.environ.pop("SSL_CERT_FILE", None)
            else:
                os.environ["SSL_CERT_FILE"] = saved


def test_each_lone_request_over_tls_is_handled_and_acked_at_once(tls_node: RabbitNode) -> None:
    prefix = new_prefix()
    settings = IntakeSettings(AMQP_URL=tls_node.tls_url, AMQP_PREFIX=prefix, ACCOUNTS_FILE=ACCOUNTS)
    declare_topology(settings)  # over TLS too
    events = Capture.bind(tls_node.url, f"{prefix}test.capture", f"{prefix}support.events")
    service = RunningService(ServiceRunner(bootstrap(settings), settings, RuntimeMetrics.create()))
    service.start()
    delays = []
    try:
        with UpstreamPublisher(tls_node.url, prefix) as upstream:
            for i in range(LONE_REQUESTS):
                time.sleep(GAP_S)
                sent = time.monotonic()
                upstream.publish("chat", short_chat(f"tls-{i}", i % 2 == 0), message_id=f"tls-{i}")
                events.take(i + 1, timeout=20)  # returns at the timeout if none came
                delays.append(time.monotonic() - sent)
        assert max(delays) < 1.0, f"seconds from publish to event: {[round(d, 2) for d in delays]}"
        # acked once the confirm is read: a lone frame on an idle link too
        wait_for(lambda: service.settled("acked") >= LONE_REQUESTS, timeout=5)
    finally:
        service.stop()
    keys = [r.routing_key for r in events.received]
    assert len(keys) == LONE_REQUESTS
    assert keys.count("ticket.opened.business_critical") == LONE_REQUESTS // 2
