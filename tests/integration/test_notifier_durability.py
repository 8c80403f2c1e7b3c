"""The notifier process killed with -9 mid-stream and restarted, on each store:
every breach delivered three times, still one page per person per reason.

What the design allows (README, "Notifications: one per key"): inputs are acked once
their sends are queued (the send queue is the ledger: a key is queued once), the
sender's threads send and record each result; a claimed send carries a 45 s lease. A
crash after a remote accepted a send and before the result was recorded leaves that
send pending under its lease, and the restarted notifier sends it again once the lease
ran out. So the only repeats are sends that were in flight at the kill (at most one per
pool thread): sent by the killed process, not recorded as sent. The test asserts exactly
that, and nothing looser:

- every expected notification arrived (nothing lost), and nothing else did;
- the killed process sent each key at most once, so did the restarted one;
- a key sent by both is one the killed process sent and had not recorded at the kill;
  being a page, it carries the same PagerDuty `dedup_key` (folded into one incident);
- the send queue (SQLite file or PostgreSQL schema, NOTIFIER_STORE_URL) holds every
  key as sent; every input was acked; every key has one escalation.sent (the outbox
  is in the store too: what the killed process had not published goes out after).

So that the test can tell which process sent what without relying on timing, the
restarted notifier reaches the same people (same ids, addresses and routing keys)
through a second set of servers: its on-call file and SMTP_PORT point there.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pika
import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from schemas.events import CloudEvent
from services.intake.ids import ticket_id
from services.intake.main import IntakeSettings
from services.notifier.delivery import Deliverer
from services.notifier.digest import DigestQueue
from services.notifier.ledger import Ledger, outbox_table
from services.notifier.oncall import load_oncall
from services.notifier.outcomes import Outcomes
from services.notifier.retry_plan import SendRetry
from services.notifier.sender import LEASE, POOL_SIZES, Sender
from services.notifier.sends import SendQueue, sends_table
from services.notifier.service import Notifier
from services.runtime.messages import Inbound
from services.runtime.names import Names
from services.sla_timer.store import engine_for
from services.upstream import pika_parameters
from tests.conftest import ROOT
from tests.integration.conftest import wait_for
from tests.integration.test_notifier import events_for_ticket, oncall_file
from tests.integration.test_notifier_channels import (  # noqa: F401 - fixtures
    Inbox,
    Serve,
    Server,
    always,
    free_port,
    serve,
    smtp,
)
from tests.support.capture import Capture, queue_depth

TICKETS = 30
KILL_AFTER = 40  # of the 3 * TICKETS pages the stream causes
# The killed process's sends in flight are claimed again once their lease ran out.
RESTART_WITHIN_S = LEASE.total_seconds() + 45


@dataclass
class Arrivals:
    """Notification keys in the order one set of servers received them."""

    keys: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, key: str) -> None:
        with self.lock:
            self.keys.append(key)

    def snapshot(self) -> list[str]:
        with self.lock:
            return list(self.keys)


@dataclass
class LoggedInbox(Inbox):
    arrivals: Arrivals = field(default_factory=Arrivals)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        reply = await super().handle_DATA(server, session, envelope)
        _, message = self.messages[-1]
        self.arrivals.add(str(message["X-Premium-Support-Key"]))
        return reply


@dataclass
class Receivers:
    """One set of servers standing for kim's and mira's pagers, the team channel and
    the mail server; every request and mail is logged in `arrivals`, in order."""

    kim: Server
    mira: Server
    team: Server
    inbox: LoggedInbox
    smtp_port: int
    oncall: Path
    arrivals: Arrivals

    def pages(self) -> list[tuple[str, dict]]:  # type: ignore[type-arg]
        """(person, PagerDuty body) of every complete paging request (a kill -9 can cut
        the one in flight short: the notifier never heard back, so it sends it again)."""
        return [
            (p, r.json())
            for p, s in (("kim", self.kim), ("mira", self.mira))
            for r in s.requests
            if len(r.body) == int(r.headers["Content-Length"])
        ]

    def cut_short(self) -> int:
        servers = (self.kim, self.mira, self.team)
        return sum(
            len(r.body) < int(r.headers["Content-Length"]) for s in servers for r in s.requests
        )


@pytest.fixture
def receivers(
    serve: Serve,  # noqa: F811 - the fixture imported above
    tmp_path: Path,
) -> Iterator[Callable[[str], Receivers]]:
    controllers: list[Controller] = []

    def make(name: str) -> Receivers:
        arrivals = Arrivals()
        servers: dict[str, Server] = {}

        def logged(who: str) -> Server:
            def script(index: int) -> tuple[int, float]:
                arrivals.add(servers[who].requests[index].headers["X-Notification-Key"])
                return 202, 0.0

            servers[who] = serve(script)
            return servers[who]

        kim, mira, team = logged("kim"), logged("mira"), logged("team")
        inbox = LoggedInbox(arrivals=arrivals)
        port = free_port()
        controllers.append(Controller(inbox, hostname="127.0.0.1", port=port))
        controllers[-1].start()
        folder = tmp_path / name
        folder.mkdir()
        return Receivers(
            kim, mira, team, inbox, port, oncall_file(folder, kim, mira, team), arrivals
        )

    yield make
    for controller in controllers:
        controller.stop()


def ticket_events(number: int, now: datetime) -> tuple[CloudEvent, CloudEvent]:
    tid = ticket_id("email", f"<kill-{number}@mail.acme.example>")
    return events_for_ticket(tid, now, subject=f"Outage {number}", correlation_id=f"c-{number}")


def expected_keys(tid: str, breached: bool = True) -> list[str]:
    """One page per person per reason and level, by their first method: the pager."""
    keys = [f"{tid}:opened:1:kim:paging_webhook"]
    if breached:
        keys += [f"{tid}:breached:1:kim:paging_webhook", f"{tid}:breached:2:mira:paging_webhook"]
    return keys


def send_statuses(engine: sa.Engine) -> dict[str, str]:
    """Every key in the send queue (the ledger) with its status."""
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(sends_table.c.key, sends_table.c.status)).all())


def publish(url: str, prefix: str, events: list[CloudEvent]) -> None:
    conn = pika.BlockingConnection(pika_parameters(url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for event in events:
            ch.basic_publish(
                f"{prefix}support.events",
                event.routing_key,
                event.model_dump_json().encode(),
                pika.BasicProperties(message_id=event.id, delivery_mode=2),
            )
    finally:
        conn.close()


def notifier_process(
    settings: IntakeSettings, store_url: str, to: Receivers
) -> subprocess.Popen[bytes]:
    env = os.environ | {
        "AMQP_URL": settings.amqp_url,
        "AMQP_PREFIX": settings.amqp_prefix,
        "ONCALL_FILE": str(to.oncall),
        "NOTIFIER_STORE_URL": store_url,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(to.smtp_port),
        "SEND_RETRY_INITIAL_S": "0.05",
        "LOG_LEVEL": "warning",
    }
    script = Path(sys.executable).with_name("premium-support")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "services.cli"]
    return subprocess.Popen([*command, "run", "notifier"], cwd=ROOT, env=env)


def alive(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        raise RuntimeError(f"the notifier exited with {process.returncode}")


def test_kill_9_mid_stream_and_every_breach_three_times_page_each_person_once(
    settings: IntakeSettings,
    events: Capture,
    store_url: str,
    receivers: Callable[[str], Receivers],
) -> None:
    first, second = receivers("first"), receivers("second")
    now = datetime.now(UTC).replace(microsecond=0)
    tickets = [ticket_events(i, now) for i in range(TICKETS)]
    # Each ticket opened then breached; then every breach delivered twice more.
    stream = [e for pair in tickets for e in pair] + [breached for _, breached in tickets] * 2
    publish(settings.amqp_url, settings.amqp_prefix, stream)
    names = Names(settings.amqp_prefix)
    queues = [names.queue("notifier_urgent"), names.queue("notifier")]
    assert queue_depth(settings.amqp_url, queues[0]) == len(stream)  # all page-worthy
    expected = {k for opened, _ in tickets for k in expected_keys(opened.subject)}

    store = engine_for(store_url)
    process = notifier_process(settings, store_url, first)
    try:
        wait_for(lambda: alive(process) or len(first.arrivals.snapshot()) >= KILL_AFTER, 60)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        time.sleep(0.3)  # a request already on the wire is still logged by its server
        killed_sent = first.arrivals.snapshot()
        assert len(killed_sent) < len(expected), "the stream ended before the kill"
        # What the killed process had recorded as sent; the rest it sent was in flight.
        recorded = {k for k, status in send_statuses(store).items() if status == "sent"}
        in_flight = set(killed_sent) - recorded
        assert len(in_flight) <= POOL_SIZES["paging_webhook"]  # at most one per thread

        process = notifier_process(settings, store_url, second)
        # A last ticket after the restart: once it is paged, every earlier input (all
        # queued before it, the unacked ones returned at the kill) has been handled.
        last_opened, _ = ticket_events(TICKETS, now)
        publish(settings.amqp_url, settings.amqp_prefix, [last_opened])
        expected |= set(expected_keys(last_opened.subject, breached=False))

        def arrived() -> set[str]:
            alive(process)
            return set(first.arrivals.snapshot()) | set(second.arrivals.snapshot())

        def done() -> set[str]:
            return {k for k, status in send_statuses(store).items() if status == "sent"}

        try:  # the sends in flight at the kill are sent again once their lease ran out
            wait_for(lambda: arrived() >= expected and done() >= expected, RESTART_WITHIN_S)
        except AssertionError:
            missing = (expected - arrived()) | (expected - done())
            raise AssertionError(f"never sent: {sorted(missing)}") from None
        time.sleep(0.5)  # a repeat would have arrived by now
    finally:
        process.terminate()  # SIGTERM: finish, ack, exit 0
        process.wait(timeout=30)
        statuses = send_statuses(store)
        store.dispose()
    assert process.returncode == 0
    for queue in queues:
        assert queue_depth(settings.amqp_url, queue) == 0  # every input handled and acked

    by_killed, by_restarted = first.arrivals.snapshot(), second.arrivals.snapshot()
    assert by_killed == killed_sent  # nothing reached the first servers after the kill
    assert set(by_killed) | set(by_restarted) == expected  # nothing lost, nothing else
    assert Counter(by_killed).most_common(1)[0][1] == 1, "the killed notifier sent a key twice"
    assert Counter(by_restarted).most_common(1)[0][1] == 1, "the restarted one sent a key twice"
    # The one window the design leaves: sends in flight at the kill, not yet recorded
    # (each of them is sent again: its lease ran out with the process).
    both = set(by_killed) & set(by_restarted)
    assert both <= in_flight, f"sent again after the restart, though recorded: {both - in_flight}"
    assert both == in_flight

    # The receivers' view: one trigger per person per dedup_key, and a repeat (if the
    # kill hit the window) carries the same dedup_key, so it is one incident.
    triggers = Counter(
        (person, body["dedup_key"])
        for r in (first, second)
        for person, body in r.pages()
        if body["event_action"] == "trigger"
    )
    tids = [opened.subject for opened, _ in tickets]
    reasons = (("kim", "opened"), ("kim", "breached"), ("mira", "breached"))
    wanted = {(p, f"{t}:{why}") for t in tids for p, why in reasons}
    wanted.add(("kim", f"{last_opened.subject}:opened"))
    assert set(triggers) == wanted
    assert sum(triggers.values()) - len(triggers) + first.cut_short() == len(both)
    for r in (first, second):  # pages only: no fallback was needed, no team notice
        assert r.inbox.messages == [] and r.team.requests == []

    # The send queue lives in the configured store and holds every key as sent.
    assert statuses == dict.fromkeys(expected, "sent")

    # escalation.sent: one event id for every key, whichever process sent it (the
    # killed one's unpublished outbox rows are published by the restarted one).
    def sent() -> dict[str, set[str]]:
        found: dict[str, set[str]] = {}
        for r in events.drain():
            if r.routing_key == "escalation.sent":
                body = r.json()
                found.setdefault(body["data"]["notification_key"], set()).add(body["id"])
        return found

    wait_for(lambda: set(sent()) >= expected, 10)
    assert set(sent()) == expected
    assert all(len(ids) == 1 for ids in sent().values())


def test_a_redelivered_input_queues_nothing_new_and_escalation_sent_exists_once(
    tmp_path: Path,
    store_url: str,
    serve: Serve,  # noqa: F811
) -> None:
    kim, mira, team = serve(always(202)), serve(always(202)), serve(always(200))
    oncall = load_oncall(oncall_file(tmp_path, kim, mira, team))
    ledger = Ledger(engine_for(store_url))
    ledger.migrate()
    sends, digests, retry = SendQueue(ledger.engine), DigestQueue(ledger.engine), SendRetry()
    outcomes = Outcomes(sends, ledger, digests, oncall, Names("t."), retry)
    notifier = Notifier(ledger, sends, outcomes, oncall, digests)
    deliverer = Deliverer(oncall, None)
    sender = Sender(sends, ledger, deliverer, outcomes, retry)
    opened, breached = ticket_events(0, datetime.now(UTC))
    inbounds = [
        Inbound(
            body=e.model_dump_json().encode(),
            routing_key=e.routing_key,
            exchange="t.support.events",
            message_id=e.id,
        )
        for e in (opened, breached)
    ]
    expected = set(expected_keys(opened.subject))
    stop = threading.Event()
    try:
        assert notifier.handle_batch(inbounds) == [[], []]  # queued, nothing to publish
        # The process dies before the broker had the acks: both inputs come again, and
        # again after their pages went out.
        assert notifier.handle_batch(inbounds) == [[], []]
        assert set(send_statuses(ledger.engine)) == expected
        deadline = time.monotonic() + 10
        while set(send_statuses(ledger.engine).values()) != {"sent"}:
            assert time.monotonic() < deadline, send_statuses(ledger.engine)
            sender.turn()
            time.sleep(0.01)
        assert notifier.handle_batch(inbounds) == [[], []]
        for _ in range(20):
            assert sender.turn() == 0  # nothing new to send
            time.sleep(0.01)
        assert send_statuses(ledger.engine) == dict.fromkeys(expected, "sent")
    finally:
        stop.set()
        sender.run(stop)
        deliverer.close()
    assert len(kim.requests) == 2 and len(mira.requests) == 1  # opened, breached; breached
    with ledger.engine.connect() as conn:
        outbox = conn.execute(sa.select(outbox_table.c.event_id, outbox_table.c.body)).all()
    ledger.engine.dispose()
    sent = Counter(
        json.loads(row.body)["data"]["notification_key"]
        for row in outbox
        if json.loads(row.body)["type"] == "support.escalation.sent"
    )
    assert sent == Counter(expected)  # exactly one escalation.sent per key
