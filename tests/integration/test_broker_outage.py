"""Every service stays up while the broker is away (issue "Pages that arrive", item 4).

The three services run in this process with `run_services`, as `premium-support run
all` runs them, fed business-critical and standard email tickets with pika (an upstream
system's view, retrying until confirmed), paging kim and mira on local HTTP servers.

- On the shared broker, this test's own connections (named `<prefix><service>`,
  `<prefix><service> publisher`, ...) are force-closed again and again, never anyone
  else's.
- On a private RabbitMQ node (tests/support/rabbit_node.py) the broker itself goes
  away: the whole node is restarted, and its RabbitMQ application is stopped while SLA
  clocks fall due.

Each time every ticket reaches its outcome (ticket.opened, sla.scheduled, the page of
each business-critical one), no notification is sent twice, and every service is still
running and consuming at the end. BROKER_OUTAGE_LONG=1 adds a 60 s outage.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pika
import pytest

from services.intake.ids import ticket_id
from services.intake.main import IntakeSettings
from services.intake.main import bootstrap as intake_bootstrap
from services.notifier.main import NotifierSettings
from services.notifier.main import bootstrap as notifier_bootstrap
from services.runtime.app import ServiceSpec, declare_topology, run_services
from services.runtime.logging import configure_logging
from services.runtime.names import Names
from services.sla_timer.main import SlaSettings
from services.sla_timer.main import bootstrap as sla_bootstrap
from services.upstream import UpstreamPublisher
from tests.conftest import ROOT
from tests.integration.conftest import ACCOUNTS, wait_for
from tests.integration.test_notifier import oncall_file
from tests.integration.test_notifier_channels import (  # noqa: F401 - serve, smtp: fixtures
    Inbox,
    Server,
    free_port,
    serve,
    smtp,
)
from tests.support.broker import new_prefix
from tests.support.capture import Capture, Received, queue_depth
from tests.support.rabbit_node import (  # noqa: F401 - rabbit_node: the fixture
    RabbitNode,
    close_shared_connections,
    rabbit_node,
)

SERVICES = ("intake", "sla_timer", "notifier")
EMAIL = json.loads((ROOT / "examples" / "inbound" / "email.json").read_text())
FAST_POLICY = ROOT / "tests" / "fixtures" / "policy-fast.yaml"
LONG = bool(os.environ.get("BROKER_OUTAGE_LONG"))
# Nothing falls due during the connection-cut test: its only pages are the `opened` ones.
CALM_POLICY = """
version: "outage-calm-1"
calendars:
  always: {always_open: true, timezone: UTC}
rules:
  - name: not-premium
    match: {premium: false}
    clock: false
  - name: everything
    match: {}
    budget: 2h
    calendar: always
    kind: guaranteed
    warn: {before: 30m}
"""

Serve = Callable[[Callable[[int], tuple[int, float]]], Server]


# --- tickets -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    id: str
    critical: bool
    body: bytes


def tickets(
    count: int, created: datetime | None = None, critical: Callable[[int], bool] | None = None
) -> list[Ticket]:
    """Support-form emails from Ana (a Super Admin of portal 4411); by default every
    other one is business-critical."""
    run = uuid.uuid4().hex[:8]
    out = []
    for i in range(count):
        mid = f"<outage-{run}-{i}@mail.acme.example>"
        is_critical = i % 2 == 0 if critical is None else critical(i)
        body = EMAIL | {
            "message_id": mid,
            "subject": f"Outage drill {i}",
            "received_at": (created or datetime.now(UTC)).isoformat(),
            "form": {"business_critical": is_critical, "user_id": "u-19"},
        }
        out.append(Ticket(ticket_id("email", mid), is_critical, json.dumps(body).encode()))
    return out


class Stream(threading.Thread):
    """Publishes tickets one by one, `interval` apart, as an upstream system does: each
    until the broker confirmed it, reconnecting (and publishing it again, under the same
    message id) while the broker is away."""

    def __init__(self, url: str, prefix: str, items: list[Ticket], interval: float) -> None:
        super().__init__(name="upstream-stream", daemon=True)
        self.url, self.prefix, self.items, self.interval = url, prefix, items, interval
        self.sent = 0
        self.retries = 0
        self.cancel = threading.Event()

    def run(self) -> None:
        publisher: UpstreamPublisher | None = None
        for item in self.items:
            while not self.cancel.is_set():
                try:
                    if publisher is None:
                        publisher = UpstreamPublisher(self.url, self.prefix)
                    publisher.publish("email", item.body)
                    break
                except (pika.exceptions.AMQPError, OSError):
                    self.retries += 1
                    if publisher is not None:
                        with contextlib.suppress(Exception):
                            publisher.close()
                    publisher = None
                    self.cancel.wait(0.5)
            self.sent += 1
            self.cancel.wait(self.interval)
        if publisher is not None:
            with contextlib.suppress(Exception):
                publisher.close()

    def finish(self, timeout: float) -> None:
        self.join(timeout)
        if self.is_alive():
            self.cancel.set()
            raise AssertionError(f"upstream could publish only {self.sent}/{len(self.items)}")


# --- the pipeline --------------------------------------------------------------------------


@dataclass
class Pipeline:
    """intake, sla_timer and notifier in one `run_services`, as `run all` runs them."""

    url: str
    prefix: str
    tmp: Path
    policy: Path
    kim: Server
    mira: Server
    team: Server
    smtp_port: int
    stop: threading.Event = field(default_factory=threading.Event)
    exit: BaseException | None = None
    port: int = 0
    threads: list[threading.Thread] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def start(self) -> Pipeline:
        self.port = free_port()
        common: dict[str, Any] = {"AMQP_URL": self.url, "AMQP_PREFIX": self.prefix}
        runtime = IntakeSettings(
            **common,
            ACCOUNTS_FILE=ACCOUNTS,
            RETRY_INITIAL_S=0.05,
            RETRY_MAX_S=0.5,
            METRICS_PORT=self.port,
            METRICS_HOST="127.0.0.1",
        )
        sla = SlaSettings(
            **common,
            SLA_STORE_URL=str(self.tmp / "clocks.db"),
            POLICY_FILE=self.policy,
            SLA_TICK_S=0.1,
        )
        notifier = NotifierSettings(
            **common,
            ONCALL_FILE=oncall_file(self.tmp, self.kim, self.mira, self.team),
            NOTIFIER_STORE_URL=str(self.tmp / "notifier.db"),
            SMTP_HOST="127.0.0.1",
            SMTP_PORT=self.smtp_port,
            SEND_RETRY_INITIAL_S=0.05,
        )
        specs = [intake_bootstrap(runtime), sla_bootstrap(sla), notifier_bootstrap(notifier)]
        before = set(threading.enumerate())
        self._thread = threading.Thread(
            target=self._run, args=(specs, runtime), name="run-all", daemon=True
        )
        self._thread.start()
        wait_for(self.healthy, timeout=30)
        # One thread per service (or per queue of a service that reads several).
        self.threads = [t for t in set(threading.enumerate()) - before if t.name in SERVICES]
        assert {t.name for t in self.threads} == set(SERVICES), self.threads
        return self

    def _run(self, specs: list[Any], runtime: IntakeSettings) -> None:
        try:
            run_services(specs, runtime, install_signals=False, stop=self.stop)
        except BaseException as exc:  # SystemExit when a service thread died
            self.exit = exc

    def health(self) -> dict[str, Any]:
        try:
            response = httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=5)
        except httpx.HTTPError as exc:
            return {"status": f"no answer: {exc}"}
        return dict(response.json())

    def healthy(self) -> bool:
        """Every service consuming (its `broker` check) and every other check passing."""
        body = self.health()
        return body.get("status") == "ok" and all(
            body["services"].get(name, {}).get("broker", {}).get("ok") for name in SERVICES
        )

    def assert_running(self) -> None:
        """run_services still running and each service's thread alive."""
        alive = self._thread is not None and self._thread.is_alive()
        assert alive, f"run_services ended: {self.exit!r}"
        dead = [thread.name for thread in self.threads if not thread.is_alive()]
        assert not dead, f"service threads died: {dead}"

    def assert_up(self) -> None:
        """Running, and (again) every service consuming."""
        self.assert_running()
        wait_for(self.healthy, timeout=20)
        self.assert_running()

    def watch(self, seconds: float) -> None:
        """Sleep `seconds`, checking all the while that nothing stopped."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.assert_running()
            time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def close(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
            assert not self._thread.is_alive(), "run_services did not stop"
        assert self.exit is None, f"run_services ended with {self.exit!r}"


@contextlib.contextmanager
def pipeline(
    url: str, prefix: str, tmp: Path, policy: Path, http: Serve, mail: tuple[Inbox, int]
) -> Iterator[Pipeline]:
    configure_logging("console", "warning")
    # A page takes a moment, as a real paging API does: deliveries pile up unread in the
    # notifier's socket meanwhile, which is what a connection release then dispatches.
    kim = http(lambda _: (202, 0.02))
    mira, team = http(lambda _: (202, 0.02)), http(lambda _: (200, 0.0))
    running = Pipeline(url, prefix, tmp, policy, kim, mira, team, mail[1]).start()
    try:
        yield running
    finally:
        running.close()


# --- what came out -------------------------------------------------------------------------


def subjects(events: Capture, routing_prefix: str) -> set[str]:
    return {
        str(r.json().get("subject"))
        for r in list(events.received)
        if r.routing_key.startswith(routing_prefix)
    }


def keys(*servers: Server) -> Counter[str]:
    return Counter(
        r.headers.get("X-Notification-Key", "?") for s in servers for r in list(s.requests)
    )


def opened_page(t: Ticket) -> str:
    return f"{t.id}:opened:1:kim:paging_webhook"


def wait_for_outcomes(
    events: Capture, running: Pipeline, items: list[Ticket], timeout: float, breaches: bool
) -> None:
    """Every ticket opened and scheduled, every critical one paged (and breached)."""
    ids = {t.id for t in items}
    critical = [t for t in items if t.critical]

    def missing() -> dict[str, int]:
        events.drain()
        gaps = {
            "ticket.opened": len(ids - subjects(events, "ticket.opened.")),
            "sla.scheduled": len(ids - subjects(events, "sla.scheduled.")),
            "opened pages": len({opened_page(t) for t in critical} - set(keys(running.kim))),
        }
        if breaches:
            breached = subjects(events, "sla.breached.business_critical")
            gaps["breaches"] = len({t.id for t in critical} - breached)
        return {k: v for k, v in gaps.items() if v}

    deadline = time.monotonic() + timeout
    while missing():
        if time.monotonic() > deadline:
            raise AssertionError(f"outcomes missing after {timeout:.0f} s: {missing()}")
        time.sleep(0.3)


def assert_nobody_paged_twice(running: Pipeline, items: list[Ticket]) -> None:
    time.sleep(2.0)  # a duplicate would have arrived by now
    paged = keys(running.kim, running.mira)
    twice = {k: n for k, n in paged.items() if n > 1}
    assert not twice, f"paged more than once: {twice}"
    assert {opened_page(t) for t in items if t.critical} <= set(paged)
    assert not {opened_page(t) for t in items if not t.critical} & set(paged)


def assert_queues_drained(url: str, prefix: str) -> None:
    for queue in Names(prefix).service_queues():
        wait_for(lambda q=queue: queue_depth(url, q) == 0, timeout=20)  # type: ignore[misc]


# --- (a) the shared broker closes this test's connections -------------------------------------


def test_services_survive_their_connections_being_closed_again_and_again(
    amqp_url: str,
    prefix: str,
    events: Capture,
    tmp_path: Path,
    serve: Serve,  # noqa: F811
    smtp: tuple[Inbox, int],  # noqa: F811
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(CALM_POLICY)
    items = tickets(240)
    with pipeline(amqp_url, prefix, tmp_path, policy, serve, smtp) as running:
        # Fast enough for the notifier (a page takes 20 ms) to fall behind: its consumer
        # then has deliveries buffered, unread, whenever a connection is cut.
        stream = Stream(amqp_url, prefix, items, interval=0.02)
        stream.start()
        # The notifier's publisher alone first: its consumer, still connected, then
        # releases with deliveries buffered (the case that ended the notifier process).
        rounds = [
            "notifier publisher",
            "notifier",
            "intake",
            "notifier publisher",
            "sla_timer",
            "",  # all of this test's connections at once
            "notifier publisher",
        ]
        wait_for(lambda: stream.sent > 40, timeout=20)
        for target in rounds:
            closed = close_shared_connections(f"{prefix}{target}", "test: outage drill")
            assert closed, f"no connection named {prefix}{target}*"
            assert all(name.startswith(prefix) for name in closed)
            running.assert_up()
        stream.finish(timeout=60)

        wait_for_outcomes(events, running, items, timeout=60, breaches=False)
        assert_nobody_paged_twice(running, items)
        running.assert_up()
        assert_queues_drained(amqp_url, prefix)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # wanted
def test_a_service_thread_that_dies_anyway_ends_run_services_non_zero(
    settings: IntakeSettings, events: Capture, amqp_url: str, prefix: str
) -> None:
    """Only a BaseException that is no Exception gets past the consume loop's retries
    (here SystemExit from a handler); then run_services stops the rest and raises
    SystemExit with a message (exit status 1), instead of returning (exit status 0)."""

    def handler(_: Any) -> list[Any]:
        raise SystemExit(0)  # the worst case: it would read as a clean exit

    calm = ServiceSpec(name="sla_timer", handlers={"#": lambda _: []})
    dying = ServiceSpec(name="intake", handlers={"#": handler})
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            run_services([dying, calm], settings.model_copy(update={"metrics_port": 0}), False)
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, name="run-dying", daemon=True)
    thread.start()
    with UpstreamPublisher(amqp_url, prefix) as upstream:
        upstream.publish("chat", b'{"any": "thing"}')
    thread.join(timeout=60)
    assert not thread.is_alive(), "run_services went on after a service thread died"
    [exc] = outcome
    assert isinstance(exc, SystemExit), f"run_services returned {exc!r}: the process exits 0"
    assert isinstance(exc.code, str) and "intake" in exc.code  # printed, exit status 1


# --- (b) a private node goes away -----------------------------------------------------------


@pytest.fixture
def on_node(rabbit_node: RabbitNode) -> Iterator[tuple[str, str, Capture]]:  # noqa: F811
    """This test's prefix and capture of support.events on the private node."""
    value = new_prefix()
    declare_topology(IntakeSettings(AMQP_URL=rabbit_node.url, AMQP_PREFIX=value))
    events = Capture.bind(rabbit_node.url, f"{value}test.capture", f"{value}support.events")
    yield rabbit_node.url, value, events


def test_a_broker_restart_loses_nothing_and_pages_nobody_twice(
    rabbit_node: RabbitNode,  # noqa: F811
    on_node: tuple[str, str, Capture],
    tmp_path: Path,
    serve: Serve,  # noqa: F811
    smtp: tuple[Inbox, int],  # noqa: F811
) -> None:
    url, prefix, events = on_node
    items = tickets(60)  # critical ones breach 3 s after they were created (fast policy)
    with pipeline(url, prefix, tmp_path, FAST_POLICY, serve, smtp) as running:
        stream = Stream(url, prefix, items, interval=0.25)
        stream.start()
        wait_for(lambda: stream.sent >= 15, timeout=20)

        down_at = time.monotonic()
        rabbit_node.shutdown()  # the whole node: a real restart, not just a closed port
        running.watch(5)
        rabbit_node.boot()
        running.assert_running()
        down_for = time.monotonic() - down_at
        assert down_for >= 10, f"the broker was away only {down_for:.1f} s"
        assert stream.sent < len(items), "the stream ended before the outage"

        stream.finish(timeout=60)
        assert stream.retries > 0, "upstream never saw the broker gone"
        wait_for_outcomes(events, running, items, timeout=60, breaches=True)
        assert_nobody_paged_twice(running, items)
        running.assert_up()
        assert_queues_drained(url, prefix)


def first_seen(events: Capture, routing_key: str, subject: str, timeout: float) -> Received:
    deadline = time.monotonic() + timeout
    while True:
        for r in events.drain():
            if r.routing_key == routing_key and r.json().get("subject") == subject:
                return r
        if time.monotonic() > deadline:
            raise AssertionError(f"no {routing_key} for {subject} within {timeout:.0f} s")
        time.sleep(0.1)


# 15 s in CI; BROKER_OUTAGE_LONG=1 makes it the minute (about 100 s in all).
OUTAGES = [60.0 if LONG else 15.0]


@pytest.mark.parametrize("outage_s", OUTAGES)
def test_a_clock_due_while_the_broker_is_away_fires_on_time_and_goes_out_on_its_return(
    outage_s: float,
    rabbit_node: RabbitNode,  # noqa: F811
    on_node: tuple[str, str, Capture],
    tmp_path: Path,
    serve: Serve,  # noqa: F811
    smtp: tuple[Inbox, int],  # noqa: F811
) -> None:
    url, prefix, events = on_node
    # A standard email from a Super Admin: 20 s budget, warned 5 s before (fast policy).
    # Created 8 s ago: warned in 7 s, due in 12 s, both while the broker is away.
    created = datetime.now(UTC) - timedelta(seconds=8)
    [ticket] = tickets(1, created=created, critical=lambda _: False)
    with pipeline(url, prefix, tmp_path, FAST_POLICY, serve, smtp) as running:
        with UpstreamPublisher(url, prefix) as upstream:
            upstream.publish("email", ticket.body)
        scheduled = first_seen(events, "sla.scheduled.standard", ticket.id, timeout=5).json()
        warn_at = datetime.fromisoformat(scheduled["data"]["warn_at"])
        due_at = datetime.fromisoformat(scheduled["data"]["due_at"])

        rabbit_node.stop()
        went_away = datetime.now(UTC)
        running.watch(max(outage_s, (due_at - went_away).total_seconds() + 3))
        coming_back = datetime.now(UTC)
        rabbit_node.start()
        back = time.monotonic()
        assert went_away < warn_at < due_at < coming_back, "the clock fell due outside the outage"

        warning = first_seen(events, "sla.warning.standard", ticket.id, timeout=30)
        warned_after = time.monotonic() - back
        breach = first_seen(events, "sla.breached.standard", ticket.id, timeout=30)
        breached_after = time.monotonic() - back
        running.assert_up()

    # Fired into the outbox on time, while the broker was away ...
    assert warning.json()["data"]["lateness_ms"] < 1500, warning.json()["data"]
    assert breach.json()["data"]["lateness_ms"] < 1500, breach.json()["data"]
    # ... and published as soon as the broker was back (the services reconnect within
    # ~2 s; the events are read off the capture queue every 0.1 s).
    assert warned_after < 6 and breached_after < 6, (warned_after, breached_after)
    # At least once on the bus; a copy (a relay that lost its confirm) has the same id.
    ids = {r.message_id for r in events.received if r.routing_key == "sla.breached.standard"}
    assert len(ids) == 1, ids
