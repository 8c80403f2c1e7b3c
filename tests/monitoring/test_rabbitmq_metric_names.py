"""deploy/prometheus/rabbitmq-metrics.txt against a real RabbitMQ: a private node
(tests/support/rabbit_node.py; the shared broker has no rabbitmq_prometheus) with the
plugin enabled and the real topology declared, scraped at /metrics/per-object as
deploy/prometheus/prometheus.yml does. So the dashboard and the alert rules name
RabbitMQ series that exist, with the `queue` and `vhost` labels they filter on."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from services.runtime.app import declare_topology
from services.runtime.config import RuntimeSettings
from tests.monitoring.test_alerts_and_dashboard import rabbitmq_metrics
from tests.support.rabbit_node import RabbitNode

PREFIX = "mon."
Samples = dict[str, set[str]]  # metric name -> the queues it has a sample for (with vhost)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


QUEUES = {
    f"{PREFIX}{q}"
    for q in ("intake.inbound", "notifier.urgent", "notifier.urgent.dead", "support.unrouted")
}


@pytest.fixture(scope="module")
def metrics_url() -> Iterator[str]:
    node = RabbitNode()
    port = _free_port()
    try:
        (node.base / "enabled_plugins").write_text("[rabbitmq_prometheus].\n")
        with open(node.base / "rabbitmq.conf", "a") as conf:
            conf.write(f"prometheus.tcp.port = {port}\nprometheus.tcp.ip = 127.0.0.1\n")
        node.boot()
        declare_topology(RuntimeSettings(AMQP_URL=node.url, AMQP_PREFIX=PREFIX))
        yield f"http://127.0.0.1:{port}/metrics/per-object"
    finally:
        node.close()


def scrape(url: str) -> Samples:
    samples: Samples = {}
    try:
        response = httpx.get(url, timeout=10)
    except httpx.TransportError:
        return samples  # the plugin's listener starts a moment after AMQP
    if response.status_code != 200:
        return samples
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if "vhost" in sample.labels:  # the rules group by vhost and queue
                samples.setdefault(sample.name, set()).add(sample.labels.get("queue", ""))
    return samples


def missing_series(samples: Samples) -> dict[str, set[str]]:
    """Listed metric -> the queues it has no sample for (all of them if not exported)."""
    return {
        name: left
        for name in sorted(rabbitmq_metrics())
        if (left := QUEUES - samples.get(name, set()))
    }


def test_rabbitmq_exports_every_listed_metric_per_queue(metrics_url: str) -> None:
    # NOTE: a quorum queue's figures (consumers among them) reach the plugin with the
    # broker's statistics, every 5 s (collect_statistics_interval), not at declare time.
    deadline = time.monotonic() + 60
    while missing_series(samples := scrape(metrics_url)) and time.monotonic() < deadline:
        time.sleep(1)
    assert missing_series(samples) == {}, f"RabbitMQ does not export these at {metrics_url}"
