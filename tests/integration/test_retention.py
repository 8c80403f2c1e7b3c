"""Retention on both stores (a SQLite file, a PostgreSQL schema): rows past their
retention go, in batches; recent rows, unsent outbox rows, open clocks, pending and
dead sends stay; a redelivery within the retention is still dropped."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from schemas.events import TicketOpened, TicketResponded, make_event
from schemas.ticket import Submitter, Ticket
from services.common.store_engine import engine_for
from services.notifier.decisions import Notification
from services.notifier.ledger import Ledger, digest_table, ledger_table, outbox_table
from services.notifier.main import NotifierSettings, prune_jobs
from services.notifier.sends import SendQueue, sends_table
from services.runtime.messages import Inbound, Outgoing
from services.runtime.retention import Pruner, cutoff
from services.sla_timer.main import SlaSettings
from services.sla_timer.main import bootstrap as sla_bootstrap
from services.sla_timer.policy import load_policy
from services.sla_timer.service import SlaTimer
from services.sla_timer.store import ClockStore, clocks, early, outbox, processed

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)
M10 = timedelta(minutes=10)
WEEK_S = 7 * 86400.0
OLD, RECENT = NOW - 8 * DAY, NOW - 2 * DAY  # past a week's retention, and within it
TID = "T-email-00000000000000aa"


def event_id(inbound: Inbound) -> str:
    return str(json.loads(inbound.body)["id"])


def keys(engine: sa.Engine, column: sa.Column[Any]) -> set[Any]:
    with engine.connect() as conn:
        return set(conn.execute(sa.select(column)).scalars())


def sla_pruner(store: ClockStore, now: datetime, batch: int = 1000) -> Pruner:
    jobs = lambda at: store.prune_jobs(at, WEEK_S, 86400.0, WEEK_S)  # noqa: E731
    return Pruner("test.pruner", store.engine, jobs, batch=batch, clock=lambda: now)


def test_the_cutoff_is_now_minus_the_retention_in_utc() -> None:
    local = datetime(2026, 12, 1, 13, 0, tzinfo=UTC).astimezone(ZoneInfo("Europe/Amsterdam"))
    assert cutoff(local, 3600) == datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    assert cutoff(local, 3600).tzinfo == UTC


# --- sla_timer -----------------------------------------------------------------------


def test_sla_store_prunes_old_ids_sent_rows_and_parked_updates_in_small_batches(
    store_url: str,
) -> None:
    store = ClockStore(engine_for(store_url))
    store.migrate()
    with store.transaction() as conn:
        store.mark_seen_many(conn, ["old-1", "old-2", "old-3"], OLD)
        store.mark_seen_many(conn, ["recent"], RECENT)
        store.add_outbox_many(
            conn,
            [
                {"event_id": e, "routing_key": "sla.x", "body": "{}", "created_at": OLD}
                for e in ("sent-long-ago", "sent-lately", "never-sent")
            ],
        )
        store.park_early_many(conn, [{"event_id": "e-old", "ticket_id": "T-a", "body": "{}"}], OLD)
        store.park_early_many(
            conn, [{"event_id": "e-new", "ticket_id": "T-b", "body": "{}"}], RECENT
        )
        store.save(
            conn, "T-open", {}, state="running", next_fire_at=None, policy_version="v", now=OLD
        )
    ids = {r.event_id: r.id for r in store.unsent(10)}
    store.mark_sent([ids["sent-long-ago"]], now=NOW - 2 * DAY)  # a day's outbox retention
    store.mark_sent([ids["sent-lately"]], now=NOW - timedelta(hours=1))

    pruned = sla_pruner(store, NOW, batch=2).turn()

    assert pruned == {"processed": 3, "outbox": 1, "early": 1}
    assert keys(store.engine, processed.c.event_id) == {"recent"}
    assert keys(store.engine, outbox.c.event_id) == {"sent-lately", "never-sent"}
    assert keys(store.engine, early.c.event_id) == {"e-new"}
    assert keys(store.engine, clocks.c.ticket_id) == {"T-open"}
    assert sla_pruner(store, NOW).turn() == {"processed": 0, "outbox": 0, "early": 0}
    store.engine.dispose()


def event_inbound(data: TicketOpened | TicketResponded, at: datetime) -> Inbound:
    event = make_event(data, service="test", subject=TID, cause="c", correlation_id="corr", now=at)
    out = Outgoing.event(event)
    return Inbound(out.body, event.routing_key, "support.events", out.content_type)


def critical_ticket(created_at: datetime) -> Ticket:
    """TID: a premium business-critical email of the Super Admin."""
    return Ticket(
        ticket_id=TID,
        channel="email",
        portal_id=4411,
        premium=True,
        submitter=Submitter(role="super_admin"),
        severity="business_critical",
        submitter_marked_critical=True,
        created_at=created_at,
    )


def test_a_redelivery_within_the_retention_is_still_dropped_and_clocks_stay(
    store_url: str,
) -> None:
    store = ClockStore(engine_for(store_url))
    store.migrate()
    start = NOW - 6 * DAY
    opened = event_inbound(TicketOpened(ticket=critical_ticket(start)), start)
    responded = event_inbound(
        TicketResponded(ticket_id=TID, at=start + M10, agent="sam"), start + M10
    )
    timer = SlaTimer(store, load_policy(None), clock=lambda: start)
    timer.handle(opened)
    timer.handle(responded)  # the clock is closed (met)
    ids = {event_id(opened), event_id(responded)}
    assert keys(store.engine, outbox.c.routing_key) == {
        "sla.scheduled.business_critical",
        "sla.met.business_critical",
    }

    assert sla_pruner(store, NOW).turn()["processed"] == 0  # handled 6 days ago: kept
    with store.transaction() as conn:
        assert store.seen_many(conn, ids) == ids  # so a redelivery now is dropped

    assert sla_pruner(store, NOW + 2 * DAY).turn()["processed"] == 2
    with store.transaction() as conn:
        assert store.seen_many(conn, ids) == set()
    assert keys(store.engine, clocks.c.ticket_id) == {TID}  # a closed clock stays too
    store.engine.dispose()


def test_an_older_store_gets_parked_at_and_its_parked_updates_are_dated(store_url: str) -> None:
    engine = engine_for(store_url)
    with engine.begin() as conn:  # sla_early_updates as the first schema had it
        conn.execute(
            sa.text(
                "CREATE TABLE sla_early_updates (event_id VARCHAR(64) PRIMARY KEY,"
                " ticket_id VARCHAR(64) NOT NULL, body TEXT NOT NULL)"
            )
        )
        conn.execute(sa.text("INSERT INTO sla_early_updates VALUES ('e-1', 'T-a', '{}')"))
    store = ClockStore(engine)
    store.migrate()
    store.migrate()  # again: nothing to add
    with engine.connect() as conn:
        (parked,) = conn.execute(sa.select(early.c.parked_at)).scalars()
    assert parked is not None
    assert sla_pruner(store, datetime.now(UTC)).turn()["early"] == 0  # dated to the upgrade
    assert sla_pruner(store, datetime.now(UTC) + 8 * DAY).turn()["early"] == 1
    engine.dispose()


# --- notifier ------------------------------------------------------------------------


def note(reason: str) -> Notification:
    return Notification(
        ticket_id=TID, reason=reason, level=1, person="kim", channel="email", action="notify"
    )


def test_notifier_store_prunes_finished_sends_keys_digests_and_sent_outbox_rows(
    store_url: str, tmp_path: Path
) -> None:
    ledger = Ledger(engine_for(store_url))
    ledger.migrate()
    engine = ledger.engine
    sends = SendQueue(engine)
    status = {
        "opened": ("sent", OLD),
        "warning": ("cancelled", OLD),
        "breached": ("dead", OLD),  # an operator may replay it: kept
        "missed": ("pending", None),  # still to send, however old: kept
        "resolved": ("sent", RECENT),
    }
    with engine.begin() as conn:
        sends.add_many(conn, [SendQueue.values(note(r), "corr", False, OLD) for r in status])
        for reason, (state, done) in status.items():
            sends.update(conn, note(reason).notification_key, status=state, done_at=done)
        conn.execute(
            ledger_table.insert(),
            [
                {"key": "k-old", "status": "sent", "at": OLD},
                {"key": "k-new", "status": "sent", "at": RECENT},
            ],
        )
        conn.execute(
            digest_table.insert(),
            [
                {"key": "d-old", "entry": "{}", "queued_at": OLD, "sent_at": OLD},
                {"key": "d-waiting", "entry": "{}", "queued_at": OLD, "sent_at": None},
                {"key": "d-new", "entry": "{}", "queued_at": RECENT, "sent_at": RECENT},
            ],
        )
        ledger.add_outbox(
            conn,
            [{"event_id": e, "routing_key": "escalation.sent", "body": "{}"} for e in "abc"],
        )
        conn.execute(
            outbox_table.update().where(outbox_table.c.event_id == "a").values(sent_at=OLD)
        )
        conn.execute(
            outbox_table.update().where(outbox_table.c.event_id == "b").values(sent_at=NOW)
        )
    settings = NotifierSettings(ONCALL_FILE=tmp_path / "unused.yaml")
    pruner = Pruner("test.pruner", engine, prune_jobs(settings), batch=1, clock=lambda: NOW)

    assert pruner.turn() == {"outbox": 1, "ledger": 1, "sends": 2, "digest": 1}

    assert keys(engine, sends_table.c.key) == {
        note(r).notification_key for r in ("breached", "missed", "resolved")
    }
    assert keys(engine, ledger_table.c.key) == {"k-new"}
    assert keys(engine, digest_table.c.key) == {"d-waiting", "d-new"}
    assert keys(engine, outbox_table.c.event_id) == {"b", "c"}
    # A redelivered event of a kept key queues nothing new.
    with engine.begin() as conn:
        sends.add_many(conn, [SendQueue.values(note("resolved"), "corr", False, NOW)])
    assert sends.counts() == {"dead": 1, "pending": 1, "sent": 1}
    engine.dispose()


# --- the services run it ---------------------------------------------------------------


def test_sla_timer_prunes_on_its_own_thread_as_the_environment_says(tmp_path: Path) -> None:
    path = str(tmp_path / "clocks.db")
    settings = SlaSettings(
        SLA_STORE_URL=path, PROCESSED_RETENTION_S=1, PRUNE_EVERY_S=0.05, METRICS_PORT=0
    )
    spec = sla_bootstrap(settings)
    store = ClockStore(engine_for(path))
    with store.transaction() as conn:
        store.mark_seen_many(conn, ["an hour ago"], datetime.now(UTC) - timedelta(hours=1))
        store.mark_seen_many(conn, ["just now"], datetime.now(UTC))
    stop = threading.Event()
    (work,) = [w for w in spec.workers if isinstance(getattr(w, "__self__", None), Pruner)]
    pruner = threading.Thread(target=work, args=(stop,), daemon=True)
    pruner.start()
    try:
        deadline = time.monotonic() + 10
        while "an hour ago" in keys(store.engine, processed.c.event_id):
            assert time.monotonic() < deadline, "the pruner did not run"
            time.sleep(0.05)
        assert keys(store.engine, processed.c.event_id) == {"just now"}
    finally:
        stop.set()
        pruner.join(timeout=5)
    assert not pruner.is_alive()
    store.engine.dispose()
