"""Wiring: connections, topology, one consume loop per service, reconnects, shutdown."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import structlog
from kombu import Connection
from prometheus_client import CollectorRegistry
from tenacity import RetryCallState, wait_exponential_jitter

from services.runtime.amqp_transport import BufferedTransport
from services.runtime.config import RuntimeSettings
from services.runtime.consumer import ConsumeLoop, Handler
from services.runtime.errors import ConnectionLost
from services.runtime.metrics import RuntimeMetrics
from services.runtime.names import Names
from services.runtime.ops_http import HealthCheck, serve_ops
from services.runtime.publisher import CONNECTION_ERRORS, ConfirmedPublisher
from services.runtime.topology import declare

log = structlog.get_logger("runtime")


@dataclass(frozen=True)
class ServiceSpec:
    """What a service plugs into the runtime: its name and handlers by routing key."""

    name: str
    handlers: Mapping[str, Handler]
    dedup_inputs: bool = False
    # Background work beside the consume loop (e.g. a scheduler); each runs in its own
    # thread until the stop event is set.
    workers: tuple[Callable[[threading.Event], None], ...] = ()
    # The service's own metrics (a registry of its own, since it is built before the
    # runtime's), served with the runtime's on /metrics.
    metrics: CollectorRegistry | None = None
    # Named checks for /healthz beside `broker` (e.g. `store`); each raises when unhealthy.
    health: Mapping[str, HealthCheck] = field(default_factory=dict)


def connection_factory(
    settings: RuntimeSettings,
    on_blocked: Callable[[str], None] | None = None,
    name: str | None = None,
    **extra: Any,
) -> Callable[[], Connection]:
    """Connections for one purpose; `name` (prefixed) is shown by the broker for each, so
    operators and tests can tell `t1.intake` from `t1.sla_timer publisher`."""

    def connect() -> Connection:
        options: dict[str, Any] = {}
        if not settings.is_memory:
            # NOTE: a blocked broker stops reading our socket; bound the write so a
            # memory/disk alarm cannot hang the loop forever.
            options = {"write_timeout": settings.blocked_timeout_s, "read_timeout": None}
            if on_blocked is not None:
                options["on_blocked"] = on_blocked
            if name is not None:
                options["client_properties"] = {"connection_name": f"{settings.amqp_prefix}{name}"}
            options |= extra
        buffered = settings.amqp_url.startswith(("amqp://", "pyamqp://"))
        return Connection(
            settings.amqp_url,
            heartbeat=settings.heartbeat_s,
            transport_options=options,
            transport=BufferedTransport if buffered else None,
        )

    return connect


def declare_topology(settings: RuntimeSettings) -> list[str]:
    with connection_factory(settings, name="topology")() as conn:
        try:
            conn.ensure_connection(max_retries=3)
            return declare(conn, Names(settings.amqp_prefix), settings)
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"cannot declare topology at {_safe_url(conn)}: {exc}") from exc


def _safe_url(conn: Connection) -> str:
    return str(conn.as_uri(include_password=False))


class ServiceRunner:
    """Runs one service's consume loop until `stop` is set, reconnecting as needed."""

    def __init__(
        self, spec: ServiceSpec, settings: RuntimeSettings, metrics: RuntimeMetrics
    ) -> None:
        self.spec = spec
        self.settings = settings
        self.stop = threading.Event()
        self.publisher = ConfirmedPublisher(
            connect=lambda: self._publisher_connection(),
            names=Names(settings.amqp_prefix),
            confirm_timeout_s=settings.confirm_timeout_s,
            blocked_timeout_s=settings.blocked_timeout_s,
        )
        self.loop = ConsumeLoop(
            spec.name,
            spec.handlers,
            settings,
            connection_factory(settings, name=spec.name),
            self.publisher,
            metrics,
            dedup_inputs=spec.dedup_inputs,
        )
        self._wait = wait_exponential_jitter(multiplier=0.5, max=15, jitter=0.5)
        if spec.metrics is not None:
            metrics.registry.register(spec.metrics)

    def health_checks(self) -> dict[str, HealthCheck]:
        return {"broker": self._broker_check, **self.spec.health}

    def _broker_check(self) -> None:
        # The consume loop's own flag: set once consuming, cleared on any connection loss.
        if not self.loop.connected:
            raise ConnectionLost("not consuming: the broker connection is down or not yet up")

    def _publisher_connection(self) -> Connection:
        factory = connection_factory(
            self.settings,
            name=f"{self.spec.name} publisher",
            on_blocked=self.publisher.on_blocked,
            on_unblocked=self.publisher.on_unblocked,
        )
        return factory()

    def run(self) -> None:
        workers = [
            threading.Thread(target=work, args=(self.stop,), name=f"{self.spec.name}-worker")
            for work in self.spec.workers
        ]
        for worker in workers:
            worker.start()
        self._consume_until_stopped()
        for worker in workers:
            worker.join(timeout=30)

    def _consume_until_stopped(self) -> None:
        failures = 0
        while not self.stop.is_set():
            try:
                self._connect_and_consume()
                failures = 0
            except Exception as exc:
                failures += 1
                if not isinstance(exc, ConnectionLost):
                    log.error("service.crashed", service=self.spec.name, exc_info=exc)
                self.loop.drop_connection()
                self.publisher.close()
                delay = self._backoff(failures)
                log.warning(
                    "connection.lost", service=self.spec.name, error=str(exc), retry_in_s=delay
                )
                self.stop.wait(delay)
        self.publisher.close()
        log.info("service.stopped", service=self.spec.name)

    def _connect_and_consume(self) -> None:
        declare_topology(self.settings)
        self.publisher.open()
        self.loop.start_consuming()
        log.info("service.consuming", service=self.spec.name, queue=self.spec.name)
        next_beat = 0.0
        while not self.stop.is_set():
            self.loop.run_once()
            if time.monotonic() >= next_beat:
                self.loop.heartbeat()
                next_beat = time.monotonic() + 1.0
        self.loop.stop_consuming()

    def _backoff(self, attempt: int) -> float:
        state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = attempt
        return float(self._wait(state))


def run_services(
    specs: list[ServiceSpec],
    settings: RuntimeSettings,
    install_signals: bool = True,
    stop: threading.Event | None = None,
) -> list[ServiceRunner]:
    """Run each service in its own thread until SIGTERM/SIGINT (or `stop` is set);
    returns once all stopped. Meanwhile /metrics and /healthz are served for all of
    them from one registry on METRICS_PORT (services.runtime.ops_http)."""
    metrics = RuntimeMetrics.create()
    runners = [ServiceRunner(spec, settings, metrics) for spec in specs]
    checks = {runner.spec.name: runner.health_checks() for runner in runners}
    ops = serve_ops(settings, metrics.registry, checks)

    def stop_all(signum: int, _frame: Any) -> None:
        log.info("shutdown.requested", signal=signal.Signals(signum).name)
        for runner in runners:
            runner.stop.set()

    if install_signals:
        signal.signal(signal.SIGTERM, stop_all)
        signal.signal(signal.SIGINT, stop_all)
    threads = [threading.Thread(target=r.run, name=r.spec.name, daemon=True) for r in runners]
    for thread in threads:
        thread.start()
    try:
        while any(t.is_alive() for t in threads):
            if stop is not None and stop.is_set():
                for runner in runners:
                    runner.stop.set()
            for thread in threads:
                thread.join(timeout=0.2)
    finally:
        if ops is not None:
            ops.stop()
    return runners
