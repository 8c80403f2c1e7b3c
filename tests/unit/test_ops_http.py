"""The ops endpoints without a broker: the health report, the HTTP server itself, and
the open-clocks gauge against a real SQLite store."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry, Counter

from services.runtime.config import RuntimeSettings
from services.runtime.ops_http import MAX_PENDING, WORKERS, health_report, serve_ops
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


def test_it_binds_to_localhost_unless_metrics_host_says_otherwise(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("METRICS_HOST", raising=False)
    default = RuntimeSettings(METRICS_PORT=free_port())
    everywhere = RuntimeSettings(METRICS_PORT=free_port(), METRICS_HOST="0.0.0.0")
    assert default.metrics_host == "127.0.0.1"
    bound = []
    for settings in (default, everywhere):
        ops = serve_ops(settings, CollectorRegistry(), {})
        assert ops is not None
        try:
            bound.append(ops.address[0])
            assert httpx.get(f"http://127.0.0.1:{ops.port}/healthz").status_code == 200
        finally:
            ops.stop()
    assert bound == ["127.0.0.1", "0.0.0.0"]


def thread_count() -> int:
    """This process's threads as the kernel counts them (Python's and any other)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError("no Threads: line in /proc/self/status")


def closed_by_peer(conn: socket.socket, timeout: float) -> float | None:
    """When the server closed `conn` (monotonic), or None if it is still open by then."""
    conn.settimeout(timeout)
    try:
        data = conn.recv(1)
    except ConnectionResetError:
        return time.monotonic()
    except TimeoutError:
        return None
    return time.monotonic() if data == b"" else None


def test_idle_connections_hold_no_thread_and_are_closed_after_the_request_timeout(
    local: RuntimeSettings,
) -> None:
    registry = CollectorRegistry()
    Counter("probe_total", "a counter", registry=registry).inc()
    idle_for, count = 1.0, 300
    baseline = thread_count()
    ops = serve_ops(local, registry, {}, request_timeout_s=idle_for)
    assert ops is not None
    conns: list[tuple[float, socket.socket]] = []
    try:
        started = thread_count()
        for n in range(count):
            conn = socket.create_connection(("127.0.0.1", ops.port), timeout=5)
            if n % 3 == 0:  # slow loris: a request head that never ends
                conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            conns.append((time.monotonic(), conn))
        while_idle = thread_count()
        scrape = httpx.get(f"http://127.0.0.1:{ops.port}/metrics", timeout=2)
        closed = [closed_by_peer(conn, idle_for + 2.0) for _, conn in conns]
    finally:
        for _, conn in conns:
            conn.close()
        ops.stop()
    assert started - baseline <= 1 + 2 * WORKERS  # the event loop and the two pools
    assert while_idle <= started, "a thread per connection"
    assert scrape.status_code == 200 and "probe_total 1.0" in scrape.text
    assert None not in closed, f"{closed.count(None)} connections still open"
    # The newest (still pending) ones were kept until the timeout, not longer.
    newest = zip(conns[-MAX_PENDING // 2 :], closed[-MAX_PENDING // 2 :], strict=True)
    kept = [c - opened for (opened, _), c in newest if c is not None]
    assert min(kept) >= idle_for * 0.9 and max(kept) <= idle_for + 1.5, kept


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
