"""The ops endpoints without a broker: the health report, the HTTP server itself, and
the open-clocks gauge against a real SQLite store."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from services.runtime.config import RuntimeSettings
from services.runtime.ops_http import health_report, serve_ops
from services.sla_timer.metrics import OpenClocks
from services.sla_timer.store import ClockStore, engine_for
from services.sla_timer.store_reads import open_clock_counts, ping


def broken() -> None:
    raise ConnectionError("refused")


def test_the_report_is_ok_when_every_check_passes() -> None:
    status, body = health_report({"intake": {"broker": lambda: None}})
    assert status == 200
    assert body == {"status": "ok", "failing": [], "services": {"intake": {"broker": {"ok": True}}}}


def test_the_report_names_each_failing_check_by_service() -> None:
    status, body = health_report(
        {
            "intake": {"broker": lambda: None},
            "sla_timer": {"broker": lambda: None, "store": broken},
        }
    )
    assert status == 503
    assert body["status"] == "unhealthy"
    assert body["failing"] == ["sla_timer.store"]
    assert body["services"]["sla_timer"]["store"] == {
        "ok": False,
        "error": "ConnectionError: refused",
    }
    assert body["services"]["intake"]["broker"] == {"ok": True}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def local() -> RuntimeSettings:
    return RuntimeSettings(METRICS_PORT=free_port(), METRICS_HOST="127.0.0.1")


def test_the_server_serves_metrics_health_and_nothing_else(local: RuntimeSettings) -> None:
    registry = CollectorRegistry()
    Counter("probe_total", "a counter", registry=registry).inc(3)
    ops = serve_ops(local, registry, {"svc": {"store": broken}})
    assert ops is not None
    base = f"http://127.0.0.1:{ops.port}"
    try:
        metrics = httpx.get(f"{base}/metrics")
        health = httpx.get(f"{base}/healthz")
        missing = httpx.get(f"{base}/admin")
    finally:
        ops.stop()
    assert metrics.status_code == 200
    assert "probe_total 3.0" in metrics.text
    assert (health.status_code, health.json()["failing"]) == (503, ["svc.store"])
    assert missing.status_code == 404
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base}/healthz", timeout=2)


def test_port_zero_serves_nothing() -> None:
    assert serve_ops(RuntimeSettings(METRICS_PORT=0), CollectorRegistry(), {}) is None


def test_a_taken_port_is_logged_not_fatal(local: RuntimeSettings) -> None:
    first = serve_ops(local, CollectorRegistry(), {})
    assert first is not None
    try:
        assert serve_ops(local, CollectorRegistry(), {}) is None
    finally:
        first.stop()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClockStore]:
    store = ClockStore(engine_for(str(tmp_path / "clocks.db")))
    store.migrate()
    yield store
    store.engine.dispose()


def add_clock(store: ClockStore, ticket_id: str, state: str) -> None:
    now = datetime.now(UTC)
    with store.transaction() as conn:
        store.save(conn, ticket_id, {}, state=state, next_fire_at=None, policy_version="t", now=now)


def test_open_clocks_are_counted_by_state_and_stopped_ones_are_not(store: ClockStore) -> None:
    assert open_clock_counts(store.engine) == {"running": 0, "breached": 0}
    for n, state in enumerate(["running", "running", "breached", "met", "resolved", "exempted"]):
        add_clock(store, f"T-{n}", state)
    assert open_clock_counts(store.engine) == {"running": 2, "breached": 1}
    ping(store.engine)


def gauge(collector: OpenClocks) -> dict[str, float]:
    return {s.labels["state"]: s.value for family in collector.collect() for s in family.samples}


def test_the_gauge_queries_the_store_at_most_once_per_ttl(store: ClockStore) -> None:
    now = [100.0]
    collector = OpenClocks(
        lambda: open_clock_counts(store.engine), ttl_s=10, monotonic=lambda: now[0]
    )
    assert gauge(collector) == {"breached": 0, "running": 0}
    add_clock(store, "T-1", "running")
    now[0] += 9
    assert gauge(collector) == {"breached": 0, "running": 0}  # cached
    now[0] += 1
    assert gauge(collector) == {"breached": 0, "running": 1}


def unreachable() -> dict[str, int]:
    raise ConnectionError("refused")


def test_the_gauge_is_left_out_while_the_store_is_down() -> None:
    assert list(OpenClocks(unreachable).collect()) == []  # the rest of the scrape still works
