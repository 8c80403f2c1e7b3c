"""Team notices grouped into digests, and the hourly coverage check, against real servers."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from schemas.events import CloudEvent, EscalationSent, SlaBreached, make_event
from services.common.store_engine import LeaderLock
from services.intake.main import IntakeSettings
from services.notifier.channels import RetryPolicy
from services.notifier.decisions import Notification
from services.notifier.delivery import Deliverer
from services.notifier.digest import DigestEntry, DigestQueue
from services.notifier.ledger import Ledger, digest_table
from services.notifier.main import NotifierSettings
from services.notifier.notes import TicketNotes
from services.notifier.oncall import load_oncall
from services.notifier.render import DIGEST_MAX
from services.notifier.worker import NotifierWorker
from services.runtime.config import RuntimeSettings
from services.runtime.outbox import OutboxRelay, PublishingWorker
from services.sla_timer.store import engine_for
from tests.integration.conftest import wait_for
from tests.integration.test_notifier import publish, run_notifier
from tests.integration.test_notifier_channels import (  # noqa: F401 - fixtures
    Serve,
    Server,
    always,
    serve,
)
from tests.support.capture import Capture

NOW = datetime.now(UTC).replace(microsecond=0)
INTERVAL_S = 2.0


def oncall_file(tmp_path: Path, team: Server, start: str, interval: str = "2s") -> Path:
    text = f"""
people:
  - {{id: kim, name: Kim, email: kim@support.example}}
schedules:
  primary: {{timezone: UTC, rotation: [kim], handoff: {{weekday: mon, hour: 9}}, start: {start}}}
escalation:
  - {{level: 1, schedules: [primary]}}
  - {{level: 2, people: [kim]}}
team_channel: {{name: team, chat_webhook: "{team.url}", timezone: UTC}}
digest_interval: {interval}
"""
    path = tmp_path / "oncall.yaml"
    path.write_text(text)
    return path


def missed_target(n: int) -> CloudEvent:
    tid = f"T-chat-{n:016x}"
    data = SlaBreached(
        ticket_id=tid,
        severity="standard",
        guaranteed=False,
        policy_rule="chat",
        policy_version="test",
        started_at=NOW - timedelta(minutes=6),
        due_at=NOW - timedelta(minutes=1),
        fired_at=NOW,
        lateness_ms=0,
    )
    return make_event(
        data, service="sla_timer", subject=tid, cause="breach", correlation_id=f"c-{n}", now=NOW
    )


def entries(server: Server) -> list[str]:
    """The ticket ids named in every digest the team channel received, in order."""
    return [
        line.split(": ", 1)[1].split(" ", 1)[0]
        for r in server.requests
        for line in r.json()["text"].splitlines()[1:]
        if line.startswith("- ")
    ]


def test_a_burst_of_missed_targets_becomes_at_most_two_digests(
    settings: IntakeSettings,
    events: Capture,
    tmp_path: Path,
    serve: Serve,  # noqa: F811 - the fixture imported above
) -> None:
    team = serve(always(200))
    monday = (NOW - timedelta(days=NOW.weekday() + 7)).date()
    notifier = NotifierSettings(
        AMQP_URL=settings.amqp_url,
        AMQP_PREFIX=settings.amqp_prefix,
        ONCALL_FILE=oncall_file(tmp_path, team, str(monday)),
        NOTIFIER_STORE_URL=str(tmp_path / "notifier.db"),
    )
    burst = [missed_target(n) for n in range(6)]
    arrivals: list[float] = []
    service = run_notifier(notifier)
    try:
        for event in burst:
            publish(settings.amqp_url, settings.amqp_prefix, event)
        deadline = time.monotonic() + 15
        while len(entries(team)) < len(burst) and time.monotonic() < deadline:
            if len(team.requests) > len(arrivals):
                arrivals.append(time.monotonic())
            time.sleep(0.02)
        arrivals += [time.monotonic()] * (len(team.requests) - len(arrivals))
        publish(settings.amqp_url, settings.amqp_prefix, burst[0], times=2)  # redelivered
        time.sleep(INTERVAL_S + 1.5)  # a duplicate digest would have gone out by now
    finally:
        service.stop()

    assert sorted(entries(team)) == sorted(e.subject for e in burst)  # each once
    assert 1 <= len(team.requests) <= 2, [r.json()["text"] for r in team.requests]
    if len(arrivals) == 2:
        assert arrivals[1] - arrivals[0] >= INTERVAL_S - 0.1
    sent = [e.json() for e in events.take(len(burst), settle=0.5)]
    ids = {
        (e["data"]["notification_key"], e["id"])
        for e in sent
        if e["type"] == "support.escalation.sent"
    }
    keys = Counter(key for key, _ in ids)
    assert set(keys) == {f"{e.subject}:missed:0:team:team_digest" for e in burst}
    # One escalation.sent per key: the redelivered notice re-emits the same event id.
    assert set(keys.values()) == {1}


def worker_for(
    tmp_path: Path, team: Server, start: str, clock: Callable[[], datetime]
) -> NotifierWorker:
    oncall = load_oncall(oncall_file(tmp_path, team, start, interval="5m"))
    ledger = Ledger(engine_for(str(tmp_path / "notifier.db")))
    ledger.migrate()
    retry = RetryPolicy(attempts=1, initial_s=0.01, max_s=0.01)
    settings = NotifierSettings(ONCALL_FILE=tmp_path / "oncall.yaml")
    return NotifierWorker(
        DigestQueue(ledger.engine), Deliverer(oncall, None, retry), settings, clock
    )


def test_coverage_gaps_are_posted_to_the_team_at_start_and_every_hour(
    tmp_path: Path,
    serve: Serve,  # noqa: F811
) -> None:
    team = serve(always(200))
    now = [datetime(2026, 11, 27, 10, tzinfo=UTC)]
    # The rotation starts on Monday 30 Nov at 09:00 UTC: nobody before that.
    worker = worker_for(tmp_path, team, "2026-11-30", lambda: now[0])

    worker.turn()  # at start
    assert len(team.requests) == 1
    text = team.requests[0].json()["text"]
    assert "Nobody on call at level 1 in 1 span ahead" in text
    assert "Fri 27 Nov 10:00 to Mon 30 Nov 09:00 UTC" in text

    now[0] += timedelta(minutes=59)
    worker.turn()
    assert len(team.requests) == 1  # not before the hour is up
    now[0] += timedelta(minutes=2)
    worker.turn()
    assert len(team.requests) == 2
    assert "Fri 27 Nov 11:01 to Mon 30 Nov 09:00 UTC" in team.requests[1].json()["text"]


def test_no_post_when_level_one_is_covered(tmp_path: Path, serve: Serve) -> None:  # noqa: F811
    team = serve(always(200))
    worker = worker_for(tmp_path, team, "2026-11-02", lambda: datetime(2026, 11, 27, tzinfo=UTC))
    worker.turn()
    assert team.requests == []


# --- failures: a refusing channel, bad rows, a failed flush, a crashing turn -------------


def queue_notices(digests: DigestQueue, count: int) -> list[str]:
    keys = []
    for n in range(count):
        tid = f"T-chat-{n:016x}"
        note = Notification(
            ticket_id=tid,
            reason="missed",
            level=0,
            person="team",
            channel="team_digest",
            action="notify",
        )
        digests.add(
            DigestEntry(notification=note, notes=TicketNotes(ticket_id=tid), correlation_id="c"),
            NOW,
        )
        keys.append(note.notification_key)
    return keys


def test_a_refusing_team_channel_records_the_notices_as_failed(
    tmp_path: Path,
    serve: Serve,  # noqa: F811
) -> None:
    team = serve(always(404))  # a revoked webhook: permanent
    worker = worker_for(tmp_path, team, "2026-11-02", lambda: NOW)
    keys = queue_notices(worker.digests, 3)

    assert worker.flush(NOW) == 0
    assert len(team.requests) == 1  # a 4xx is not retried
    rows = worker.digests.unpublished()
    assert sorted(json.loads(r.body)["data"]["notification_key"] for r in rows) == sorted(keys)
    assert {r.routing_key for r in rows} == {"escalation.failed"}
    assert all(Ledger(worker.digests.engine).sent_at(k) is None for k in keys)
    later = NOW + timedelta(hours=1)
    assert worker.flush(later) == 0 and len(team.requests) == 1  # left the queue


def test_a_team_channel_that_is_down_keeps_the_notices_for_later(
    tmp_path: Path,
    serve: Serve,  # noqa: F811
) -> None:
    team = serve(lambda n: (503, 0.0) if n == 0 else (200, 0.0))  # down for the first flush
    now = [NOW]
    worker = worker_for(tmp_path, team, "2026-11-02", lambda: now[0])
    keys = queue_notices(worker.digests, DIGEST_MAX + 2)  # two messages' worth

    assert worker.flush(now[0]) == 0 and worker.digests.unpublished() == []
    assert worker.flush(now[0] + timedelta(seconds=10)) == 0  # not before the retry time
    now[0] += timedelta(seconds=31)
    assert worker.flush(now[0]) == len(keys)  # both batches, in one flush
    assert len(team.requests) == 1 + 2
    rows = worker.digests.unpublished()
    assert {r.routing_key for r in rows} == {"escalation.sent"} and len(rows) == len(keys)


def test_an_unreadable_row_does_not_block_the_digest(tmp_path: Path, serve: Serve) -> None:  # noqa: F811
    team = serve(always(200))
    worker = worker_for(tmp_path, team, "2026-11-02", lambda: NOW)
    keys = queue_notices(worker.digests, 2)
    with worker.digests.engine.begin() as conn:
        conn.execute(digest_table.insert().values(key="x", entry='{"from": "v9"}', queued_at=NOW))
    assert worker.flush(NOW) == 2
    assert sorted(entries(team)) == sorted(k.split(":")[0] for k in keys)
    with worker.digests.engine.connect() as conn:
        assert (
            conn.execute(sa.select(digest_table.c.key).where(digest_table.c.key == "x")).all() == []
        )


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_a_failed_flush_on_postgresql_releases_the_lock(store_url: str) -> None:
    one, other = (DigestQueue(engine_for(store_url)) for _ in range(2))
    Ledger(one.engine).migrate()
    with pytest.raises(sa.exc.DataError), one.flushing() as conn:
        assert conn is not None
        conn.execute(sa.text("SELECT 1/0"))
    with other.flushing() as conn:  # another replica
        assert conn is not None, "the lock was left held by a pooled connection"


class FlakyWorker(PublishingWorker):
    """Raises an unexpected error on its first turn, then counts turns."""

    def __init__(self) -> None:
        super().__init__(RuntimeSettings(), "flaky")
        self.turns = 0

    def step(self, stop: threading.Event) -> None:
        self.turns += 1
        if self.turns == 1:
            raise ValueError("a bug")
        stop.wait(0.01)


def test_a_worker_outlives_an_unexpected_error_and_reports_a_stall() -> None:
    worker, stop = FlakyWorker(), threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 5
        while worker.turns < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert worker.turns >= 3
        worker.check_alive()  # running: no error
    finally:
        stop.set()
        thread.join(5)
    worker.beat -= 1000  # as if it had died long ago
    with pytest.raises(RuntimeError, match="flaky has not run for"):
        worker.check_alive()


@pytest.mark.parametrize("store_url", ["postgresql"], indirect=True)
def test_two_replicas_relay_each_outbox_event_once(
    store_url: str, settings: IntakeSettings, events: Capture
) -> None:
    """Two notifier replicas on one PostgreSQL store, each with its OutboxRelay: one
    leader publishes (to the real broker), the other waits; when the leader stops, the
    other takes over at once. Every outbox event is published once."""
    queues = [DigestQueue(engine_for(store_url)) for _ in range(2)]
    Ledger(queues[0].engine).migrate()
    lock = random.randint(1, 2**31 - 1)  # no other test or deployment contends for it
    relays = [
        OutboxRelay(
            settings,
            f"notifier.relay.{i}",
            Ledger(q.engine),
            poll_s=0.05,
            leader=LeaderLock(q.engine, lock),
        )
        for i, q in enumerate(queues)
    ]
    stops = [threading.Event() for _ in relays]
    threads = [
        threading.Thread(target=r.run, args=(s,)) for r, s in zip(relays, stops, strict=True)
    ]
    written: list[str] = []

    def write(first: int, count: int) -> None:
        """Team notices sent: their escalation.sent events go in the outbox."""
        one = queues[0]
        keys = queue_notices(one, first + count)[first:]
        with one.engine.connect() as conn:
            pending = [
                e for e in one.pending(conn, limit=100) if e.notification.notification_key in keys
            ]
        events_ = [NotifierWorker._event(e, EscalationSent, NOW) for e in pending]
        one.mark_done(pending, events_, NOW, "sent")
        written.extend(e.id for e in events_)

    def published() -> list[str]:
        return [r.message_id or "" for r in events.drain() if r.routing_key == "escalation.sent"]

    for t in threads:
        t.start()
    try:
        write(0, 5)
        wait_for(lambda: len(published()) >= 5)
        [leader] = [i for i, r in enumerate(relays) if r.published]
        assert relays[1 - leader].published == 0  # the other replica only waited
        stops[leader].set()  # the leader stops (or dies): its lock goes with it
        threads[leader].join(10)
        write(5, 5)
        wait_for(lambda: len(published()) >= 10)
        time.sleep(0.5)  # a second publication of any row would have arrived by now
    finally:
        for stop in stops:
            stop.set()
        for t in threads:
            t.join(10)
        for q in queues:
            q.engine.dispose()
    assert len(written) == 10
    assert Counter(published()) == Counter(written)  # each once
    assert relays[leader].published == 5 and relays[1 - leader].published == 5
    check = engine_for(store_url)
    try:
        assert Ledger(check).unsent(100) == []
    finally:
        check.dispose()
