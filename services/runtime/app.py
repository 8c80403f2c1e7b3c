"""Wiring: connections, topology, one consume loop per service, reconnects, shutdown."""

from __future__ import annotations

import os
import signal
import socket
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
from services.runtime.arrivals import Urgency
from services.runtime.config import RuntimeSettings
from services.runtime.consumer import BatchHandler, ConsumeLoop, Handler
from services.runtime.errors import ConnectionLost
from services.runtime.metrics import RuntimeMetrics
from services.runtime.names import Names
from services.runtime.ops_http import HealthCheck, serve_ops
from services.runtime.publisher import CONNECTION_ERRORS, ConfirmedPublisher
from services.runtime.topology import TopologyMissing, check, declare

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
    # Handles a turn's worth of deliveries at once (one store transaction, one multiple
    # ack); when set it takes every delivery and `handlers` is not used.
    batch_handler: BatchHandler | None = None
    # The service's queues (keys of names.SERVICE_BINDINGS), each read by a consume loop
    # of its own on its own connection and thread, so one queue's backlog never delays
    # another's deliveries (the notifier's page-worthy events). Default: `name`.
    queues: tuple[str, ...] = ()
    # A cheap look at a raw delivery: true when it may be page-worthy (e.g. marked
    # business-critical). The loop then reads the whole prefetch window ahead and
    # handles those first (services.runtime.arrivals); None keeps arrival order.
    urgent: Urgency | None = None
    # The service's own PREFETCH_COUNT when its settings class defaults it differently
    # (`run all` runs every service on one RuntimeSettings).
    prefetch: int | None = None


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
            options = {
                "write_timeout": settings.blocked_timeout_s,
                "read_timeout": None,
                "socket_settings": _socket_settings(settings),
            }
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


def _socket_settings(settings: RuntimeSettings) -> dict[int, int]:
    """TCP options over py-amqp's defaults.

    NOTE: py-amqp sets TCP_USER_TIMEOUT to 1 s, and Linux aborts a connection whose peer
    shows a zero window for longer than that. RabbitMQ throttles a publisher (credit
    flow in a burst, a memory or disk alarm) by not reading its socket, which is just
    that: each pause over a second cost the connection and a window of redeliveries.
    Unacknowledged data may wait as long as a blocked write may (BLOCKED_TIMEOUT_S);
    a dead peer is still found by heartbeats."""
    option = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux only
    # 0 would mean no bound at all, and the option is a C unsigned int of milliseconds
    ms = min(max(int(settings.blocked_timeout_s * 1000), 1000), 2**31 - 1)
    return {} if option is None else {option: ms}


def declare_topology(settings: RuntimeSettings) -> list[str]:
    with connection_factory(settings, name="topology")() as conn:
        try:
            conn.ensure_connection(max_retries=3)
            return declare(conn, Names(settings.amqp_prefix), settings)
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"cannot declare topology at {_safe_url(conn)}: {exc}") from exc


def check_topology(settings: RuntimeSettings, queue_keys: tuple[str, ...]) -> None:
    """Passively check what consume loops on `queue_keys` need (DECLARE_TOPOLOGY=passive):
    TopologyMissing names what is not there; no broker right is needed for it."""
    with connection_factory(settings, name="topology check")() as conn:
        try:
            conn.ensure_connection(max_retries=3)
            check(conn, Names(settings.amqp_prefix), queue_keys)
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"cannot check topology at {_safe_url(conn)}: {exc}") from exc


def _safe_url(conn: Connection) -> str:
    return str(conn.as_uri(include_password=False))


class ServiceRunner:
    """Runs one service's consume loop until `stop` is set, reconnecting as needed."""

    def __init__(
        self,
        spec: ServiceSpec,
        settings: RuntimeSettings,
        metrics: RuntimeMetrics,
        queue: str | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.spec = spec
        if spec.prefetch is not None and spec.prefetch != settings.prefetch:
            settings = settings.model_copy(update={"prefetch": spec.prefetch})
        self.settings = settings
        queues = spec.queues or (spec.name,)
        self.queue = queue or queues[0]
        # The first queue's runner also runs the service's workers and registers metrics.
        self.primary = self.queue == (spec.queues or (spec.name,))[0]
        label = spec.name if self.queue == spec.name else self.queue.replace("_", ".")
        self.label = label
        self.stop = stop or threading.Event()
        # Why this service gave up for good (the topology it needs is missing), if it did.
        self.fatal: str | None = None
        # The service's other queues: a consume loop each, on threads this one starts.
        self.others = [
            ServiceRunner(spec, settings, metrics, q, self.stop)
            for q in (queues[1:] if self.primary else ())
        ]
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
            connection_factory(settings, name=label),
            self.publisher,
            metrics,
            dedup_inputs=spec.dedup_inputs,
            batch_handler=spec.batch_handler,
            queue=self.queue,
            urgent=spec.urgent,
        )
        self._wait = wait_exponential_jitter(multiplier=0.5, max=15, jitter=0.5)
        if spec.metrics is not None and self.primary:
            metrics.registry.register(spec.metrics)

    def health_checks(self) -> dict[str, HealthCheck]:
        return {"broker": self._broker_check, **self.spec.health}

    def _broker_check(self) -> None:
        # The consume loop's own flag: set once consuming, cleared on any connection loss.
        for runner in (self, *self.others):
            if not runner.loop.connected:
                raise ConnectionLost(
                    f"not consuming {runner.queue}: the broker connection is down or not yet up"
                )

    def _publisher_connection(self) -> Connection:
        factory = connection_factory(
            self.settings,
            name=f"{self.label} publisher",
            on_blocked=self.publisher.on_blocked,
            on_unblocked=self.publisher.on_unblocked,
        )
        return factory()

    def run(self) -> None:
        workers = [
            threading.Thread(target=work, args=(self.stop,), name=f"{self.spec.name}-worker")
            for work in (self.spec.workers if self.primary else ())
        ] + [
            threading.Thread(target=other.run, name=other.label, daemon=True)
            for other in self.others
        ]
        for worker in workers:
            worker.start()
        try:
            self._consume_until_stopped()
        except BaseException as exc:
            # Every Exception is retried inside; this is something else (SystemExit from
            # a handler, ...). Say so, stop this service's workers, and end: run_services
            # sees the thread gone and exits non-zero, never 0.
            log.critical("service.thread_died", service=self.spec.name, exc_info=exc)
            self.stop.set()
            raise
        finally:
            for worker in workers:
                worker.join(timeout=30)

    def _consume_until_stopped(self) -> None:
        """Consume, and after any failure reconnect with backoff, until `stop` is set.

        Nothing ends this loop but `stop`: not the broker going away, not a bug in a
        handler or the loop, not an error while releasing the broken connection (py-amqp
        dispatches buffered deliveries while it closes, and their publishes fail on a
        dead publisher). A broker that went away is tried again at most
        `reconnect_max_s` apart, so it is used again within seconds of its return; other
        failures (bugs) back off up to 15 s, loudly."""
        reconnect_max_s = 2.0
        healthy_after_s = 10.0  # consumed this long before failing: start backoff afresh

        def release() -> None:
            """Drop the consumer's and the publisher's connections; never raises.

            While py-amqp closes a connection it dispatches the deliveries it still has
            buffered, so a handler runs and its publish can fail (ConnectionLost, which
            `suppress(*CONNECTION_ERRORS)` does not catch) in the middle of the close.
            Each such failure used up at least one buffered frame, so trying again
            finishes the close; the deliveries involved are unacked and come back."""
            deadline = time.monotonic() + 10.0
            for attempt in range(1, self.settings.prefetch + 3):
                try:
                    self.loop.drop_connection()
                    break
                except Exception as exc:
                    if attempt == 1:
                        log.warning(
                            "connection.release_failed", service=self.spec.name, error=repr(exc)
                        )
                    if time.monotonic() > deadline:
                        log.error(
                            "connection.release_abandoned",
                            service=self.spec.name,
                            attempts=attempt,
                            error=repr(exc),
                        )
                        break
            try:
                self.publisher.close()
            except Exception as exc:
                log.warning("publisher.close_failed", service=self.spec.name, error=repr(exc))

        failures = 0
        while not self.stop.is_set():
            attempt_started = time.monotonic()
            try:
                self._connect_and_consume()
                failures = 0
                continue
            except TopologyMissing as exc:
                # Not retried: nothing this service may do creates it. One line, then the
                # process ends non-zero (run_services) and its supervisor may try again.
                self.fatal = f"{self.label}: {exc}"
                log.error("topology.missing", service=self.spec.name, error=str(exc))
                release()
                self.stop.set()
                break
            except Exception as exc:
                error = exc
            if self.loop.connected and time.monotonic() - attempt_started >= healthy_after_s:
                failures = 0
            failures += 1
            broker_trouble = isinstance(error, (ConnectionLost, *CONNECTION_ERRORS))
            if not broker_trouble:
                log.error("service.crashed", service=self.spec.name, exc_info=error)
            release()
            delay = self._backoff(failures)
            if broker_trouble:
                delay = min(delay, reconnect_max_s)
            log.warning(
                "connection.lost", service=self.spec.name, error=str(error), retry_in_s=delay
            )
            self.stop.wait(delay)
        try:
            self.publisher.close()
        except Exception as exc:  # stopping anyway; the broker drops it with the socket
            log.warning("publisher.close_failed", service=self.spec.name, error=repr(exc))
        log.info("service.stopped", service=self.spec.name)

    def _connect_and_consume(self) -> None:
        # NOTE: the publisher first: its connect fails within ~2 s while the broker is
        # away; declare_topology's (ensure_connection(max_retries=3)) takes ~12 s to
        # fail, which delayed every reconnect by as much after the broker came back.
        self.publisher.open()
        if self.settings.topology_mode == "passive":
            check_topology(self.settings, (self.queue,))
        else:
            declare_topology(self.settings)
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
    them from one registry on METRICS_PORT (services.runtime.ops_http).

    A service thread never ends on its own (ServiceRunner.run retries every Exception).
    If one dies anyway, the others are stopped and this raises SystemExit(1): the
    process exits non-zero, with `service.died` logged, so its supervisor restarts it;
    it never returns, and so never exits 0, while no stop was asked for."""
    metrics = RuntimeMetrics.create()
    runners = [ServiceRunner(spec, settings, metrics) for spec in specs]
    checks = {runner.spec.name: runner.health_checks() for runner in runners}
    ops = serve_ops(settings, metrics.registry, checks)

    requested = threading.Event()  # a stop asked for (signal or `stop`), not a death
    signals: list[int] = []  # appended by the handler; the loop below acts on them

    def on_signal(signum: int, _frame: Any) -> None:
        # NOTE: a handler runs in the main thread between two bytecodes, maybe while that
        # thread holds structlog's write lock or an Event's lock; logging (or Event.set)
        # here deadlocked `run all` at a second signal. So it only takes note; a second
        # signal means "now": no graceful stop, unacked inputs come back to the queues.
        signals.append(signum)
        if len(signals) > 1:
            os.write(2, b"second signal: exiting now, without waiting for a graceful stop\n")
            os._exit(128 + signum)

    if install_signals:
        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
    threads = [threading.Thread(target=r.run, name=r.spec.name, daemon=True) for r in runners]
    for thread in threads:
        thread.start()
    died: list[str] = []
    give_up_at = float("inf")  # after a death, how long the others get to stop
    try:
        while any(t.is_alive() for t in threads) and time.monotonic() < give_up_at:
            if signals and not requested.is_set():
                log.info("shutdown.requested", signal=signal.Signals(signals[0]).name)
                requested.set()
            if stop is not None and stop.is_set():
                requested.set()
            dead = [t.name for t in threads if not t.is_alive()]
            if dead and not requested.is_set():
                died = dead
                log.critical("service.died", services=dead, action="stopping the process")
                requested.set()
                give_up_at = time.monotonic() + 30.0
            if requested.is_set():
                for runner in runners:
                    runner.stop.set()
            for thread in threads:
                thread.join(timeout=0.2)
        if not requested.is_set():  # every thread ended, yet nobody asked them to
            died = [t.name for t in threads]
            log.critical("service.died", services=died, action="stopping the process")
    finally:
        if ops is not None:
            ops.stop()
    fatal = [each.fatal for r in runners for each in (r, *r.others) if each.fatal]
    if fatal:
        raise SystemExit("; ".join(fatal))
    if died:
        raise SystemExit(f"service thread(s) died: {', '.join(died)}")
    return runners
