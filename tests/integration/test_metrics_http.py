"""/metrics and /healthz over real HTTP while the services run on the real broker: the
counters move with real traffic, and /healthz names the broker or store that is down."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from services.intake.main import IntakeSettings
from services.intake.main import bootstrap as intake_bootstrap
from services.notifier.main import NotifierSettings
from services.notifier.main import bootstrap as notifier_bootstrap
from services.runtime.app import ServiceRunner, run_services
from services.runtime.config import RuntimeSettings
from services.runtime.metrics import RuntimeMetrics
from services.runtime.ops_http import serve_ops
from services.sla_timer.main import SlaSettings
from services.sla_timer.main import bootstrap as sla_bootstrap
from services.upstream import UpstreamPublisher
from tests.integration.conftest import PG_URL, RunningService, wait_for
from tests.integration.test_notifier import (  # noqa: F401 - notifier_env is a fixture
    events_for_ticket,
    notifier_env,
    oncall_file,
    publish,
)
from tests.integration.test_notifier_channels import (  # noqa: F401 - fixtures
    always,
    free_port,
    serve,
    smtp,
)
from tests.integration.test_sla_timer import email
from tests.support.broker import close_connection
from tests.support.capture import Capture

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(port: int) -> Samples:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
    assert response.headers["content-type"] == "application/json"
    return response.status_code, response.json()


def on_free_port(settings: RuntimeSettings) -> RuntimeSettings:
    return settings.model_copy(update={"metrics_port": free_port(), "metrics_host": "127.0.0.1"})


@contextmanager
def serving(settings: RuntimeSettings, runner: ServiceRunner) -> Iterator[int]:
    """One runner's /metrics and /healthz, as run_services serves them; yields the port."""
    ops = serve_ops(
        on_free_port(settings), runner.loop.registry, {runner.spec.name: runner.health_checks()}
    )
    assert ops is not None
    try:
        yield ops.port
    finally:
        ops.stop()


def test_run_all_serves_every_service_on_one_port(  # type: ignore[no-untyped-def]
    settings: IntakeSettings,
    events: Capture,
    upstream: UpstreamPublisher,
    notifier_env,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> None:
    notifier_settings, kim, _, _ = notifier_env
    sla_settings = SlaSettings(
        AMQP_URL=settings.amqp_url,
        AMQP_PREFIX=settings.amqp_prefix,
        SLA_STORE_URL=str(tmp_path / "clocks.db"),
        SLA_TICK_S=0.1,
    )
    specs = [
        intake_bootstrap(settings),
        sla_bootstrap(sla_settings),
        notifier_bootstrap(notifier_settings),
    ]
    runtime = on_free_port(settings)
    port = runtime.metrics_port
    stop = threading.Event()
    thread = threading.Thread(
        target=run_services, args=(specs, runtime, False, stop), name="run-all", daemon=True
    )
    thread.start()
    try:
        wait_for(lambda: healthz(port)[0] == 200, timeout=30)
        now = datetime.now(UTC).replace(microsecond=0)
        upstream.publish("email", email(now - timedelta(hours=2)))  # breached on arrival
        upstream.publish("email", email(now, mid="<running@mail.acme.example>"))
        upstream.publish("chat", b"{not json")
        # Clocks are committed once their sla events are out; pages once escalated.
        wait_for(lambda: routing_keys(events).count("sla.scheduled.business_critical") == 2)
        wait_for(lambda: "sla.breached.business_critical" in routing_keys(events))
        wait_for(lambda: "escalation.sent" in routing_keys(events))
        wait_for(lambda: settled(scrape(port), "notifier") >= 4, timeout=15)
        samples = scrape(port)
        status, body = healthz(port)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive(), "run_services did not stop"

    assert value(samples, "messages_consumed_total", service="intake") == 3
    assert value(samples, "messages_settled_total", service="intake", outcome="acked") == 2
    assert value(samples, "messages_settled_total", service="intake", outcome="dead_lettered") == 1
    assert value(samples, "handler_duration_seconds_count", service="intake") == 2
    assert value(samples, "messages_consumed_total", service="sla_timer") == 2
    assert value(samples, "sla_clocks_open", state="running") == 1
    assert value(samples, "sla_clocks_open", state="breached") == 1
    assert value(samples, "sla_events_fired_total", kind="warning") == 1
    assert value(samples, "sla_events_fired_total", kind="breach") == 1
    assert (value(samples, "notifications_sent_total", channel="paging_webhook") or 0) >= 1
    assert len(kim.requests) >= 1  # the counter counts real pages
    assert status == 200
    assert body["status"] == "ok" and body["failing"] == []
    assert {name: sorted(checks) for name, checks in body["services"].items()} == {
        "intake": ["broker"],
        "sla_timer": ["broker", "relay", "scheduler", "store"],
        "notifier": ["broker", "relay", "sender", "store", "worker"],
    }
    with pytest.raises(httpx.ConnectError):  # the server stopped with the services
        httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2)


def routing_keys(events: Capture) -> list[str]:
    return [received.routing_key for received in events.drain()]


def settled(samples: Samples, service: str) -> float:
    return sum(
        v
        for (name, labels), v in samples.items()
        if name == "messages_settled_total" and ("service", service) in labels
    )


def test_healthz_names_the_broker_while_a_service_is_not_consuming(
    settings: IntakeSettings,
) -> None:
    runner = ServiceRunner(intake_bootstrap(settings), settings, RuntimeMetrics.create())
    with serving(settings, runner) as port:
        status, body = healthz(port)
        assert (status, body["failing"]) == (503, ["intake.broker"])  # not started yet
        assert "broker" in body["services"]["intake"]["broker"]["error"]

        service = RunningService(runner).start()
        try:
            assert healthz(port) == (
                200,
                {"status": "ok", "failing": [], "services": {"intake": {"broker": {"ok": True}}}},
            )
            assert close_connection(f"{settings.amqp_prefix}intake", "test: healthz") >= 1
            wait_for(lambda: healthz(port)[1]["failing"] == ["intake.broker"], timeout=10)
            wait_for(lambda: healthz(port)[0] == 200, timeout=30)  # reconnected
        finally:
            service.stop()
        assert healthz(port)[1]["failing"] == ["intake.broker"]


@pytest.fixture
def pg_database() -> Iterator[tuple[str, Callable[[], None]]]:
    """A PostgreSQL database of its own, and a way to make it vanish under the service."""
    name = f"t{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(
        PG_URL.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT"
    )

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))

    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    yield f"{PG_URL.rsplit('/', 1)[0]}/{name}", drop
    drop()
    admin.dispose()


def test_healthz_names_the_store_when_it_cannot_be_reached(
    settings: IntakeSettings, pg_database: tuple[str, Callable[[], None]]
) -> None:
    url, drop = pg_database
    sla_settings = SlaSettings(
        AMQP_URL=settings.amqp_url, AMQP_PREFIX=settings.amqp_prefix, SLA_STORE_URL=url
    )
    runner = ServiceRunner(sla_bootstrap(sla_settings), sla_settings, RuntimeMetrics.create())
    service = RunningService(runner).start()
    try:
        with serving(sla_settings, runner) as port:
            assert healthz(port)[0] == 200
            assert value(scrape(port), "sla_clocks_open", state="running") == 0
            drop()
            status, body = healthz(port)
            assert (status, body["failing"]) == (503, ["sla_timer.store"])
            assert body["services"]["sla_timer"]["broker"] == {"ok": True}
            assert "OperationalError" in body["services"]["sla_timer"]["store"]["error"]
            assert value(scrape(port), "messages_consumed_total", service="sla_timer") is not None
    finally:
        service.stop()


def test_failed_notifications_are_counted_by_channel(  # type: ignore[no-untyped-def]
    notifier_env,  # noqa: F811 - the fixture imported above
    serve,  # noqa: F811
    events: Capture,
    tmp_path: Path,
) -> None:
    notifier_settings: NotifierSettings = notifier_env[0]
    mira = notifier_env[2]
    # kim's pager answers 503 and nobody listens on the SMTP port: each of kim's attempts
    # fails, by either method, until the short budget is spent; mira (level 2) is paged.
    kim, team = serve(always(503)), serve(always(200))
    folder = tmp_path / "failing"
    folder.mkdir()
    down = notifier_settings.model_copy(
        update={
            "oncall_file": oncall_file(folder, kim, mira, team),
            "smtp_port": free_port(),
            "send_retry_budget_s": 1.0,
            "send_retry_max_s": 0.2,
        }
    )
    runner = ServiceRunner(notifier_bootstrap(down), down, RuntimeMetrics.create())
    service = RunningService(runner).start()
    try:
        with serving(down, runner) as port:
            opened, _ = events_for_ticket()
            publish(down.amqp_url, down.amqp_prefix, opened)
            wait_for(
                lambda: (
                    value(scrape(port), "notifications_failed_total", channel="paging_webhook") == 1
                ),
                timeout=20,
            )
            samples = scrape(port)
    finally:
        service.stop()
    attempts = {
        channel: value(samples, "notification_attempts_failed_total", channel=channel) or 0
        for channel in ("paging_webhook", "email")
    }
    assert attempts["paging_webhook"] >= 2 and attempts["email"] >= 2  # rounds of both
    assert attempts["paging_webhook"] == len(kim.requests)  # one per real try
    # Given up once, counted by the notification's (first) channel; mira's page went.
    assert value(samples, "notifications_failed_total", channel="paging_webhook") == 1
    assert value(samples, "notifications_failed_total", channel="email") is None
    assert value(samples, "notifications_sent_total", channel="paging_webhook") == 1
    assert len(mira.requests) == 1
    assert value(samples, "notifications_sent_total", channel="email") is None
    # The input was handled (its sends queued) and acked: nothing is dead-lettered.
    assert value(samples, "messages_settled_total", service="notifier", outcome="acked") == 1
    assert (
        value(samples, "messages_settled_total", service="notifier", outcome="dead_lettered")
        is None
    )
