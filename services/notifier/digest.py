"""Team notices, grouped into one digest message at most every `digest_interval`.

The consume loop queues a team notice (`DigestQueue.add`) and acks its input. The digest
worker sends everything pending as one message once `digest_interval` has passed since
the last digest (so the first notice after a quiet spell goes at once, and a burst waits
for the next one), then in one transaction marks the entries sent, records their keys
in the ledger, and writes their escalation.sent events to the outbox, which it publishes
with confirms. A crash between the send and that transaction sends the same digest once
more: a repeated non-urgent notice, never a page. A channel that refuses for good
(PermanentError) gets the entries recorded as failed, with escalation.failed events.
Entries sent are pruned after their retention (`prune_job`); pending ones stay.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
import structlog
from pydantic import BaseModel, ConfigDict, ValidationError
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from schemas.events import CloudEvent
from services.notifier.decisions import Notification
from services.notifier.ledger import digest_table, ledger_table, outbox_table
from services.notifier.notes import TicketNotes
from services.runtime.outbox import OutboxRow
from services.runtime.retention import PruneJob, ended_before

log = structlog.get_logger("notifier.digest")

FLUSH_LOCK = 815003  # PostgreSQL advisory lock: one replica sends a given digest


class DigestEntry(BaseModel):
    """A queued team notice with what the notifier knew of the ticket when it was queued."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    notification: Notification
    notes: TicketNotes
    correlation_id: str


def digest_due(
    pending: bool, last_sent: datetime | None, now: datetime, interval: timedelta
) -> bool:
    """Send now? Only with something pending, and at most once per `interval`."""
    return pending and (last_sent is None or now - last_sent >= interval)


def _utc(value: datetime | None) -> datetime | None:
    # NOTE: SQLite hands back naive datetimes; everything stored is UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class DigestQueue:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self._insert = postgresql_insert if self.is_postgres else sqlite_insert

    def add(self, entry: DigestEntry, now: datetime) -> None:
        """Queue a notice; a redelivered one (same key) is queued once."""
        with self.engine.begin() as conn:
            self.add_in(conn, [entry], now)

    def add_in(self, conn: Connection, entries: list[DigestEntry], now: datetime) -> None:
        """`add` inside the caller's transaction (the consume loop's batch)."""
        rows = [
            {"key": e.notification.notification_key, "entry": e.model_dump_json(), "queued_at": now}
            for e in entries
        ]
        if rows:
            conn.execute(
                self._insert(digest_table).on_conflict_do_nothing(index_elements=["key"]), rows
            )

    @contextmanager
    def flushing(self) -> Iterator[Connection | None]:
        """A connection for one flush, or None when another replica is flushing."""
        with self.engine.connect() as conn:
            if self.is_postgres:
                locked = conn.execute(sa.select(sa.func.pg_try_advisory_lock(FLUSH_LOCK))).scalar()
                conn.commit()
                if not locked:
                    yield None
                    return
            try:
                yield conn
            finally:
                if self.is_postgres:
                    _unlock(conn)

    def pending(self, conn: Connection, limit: int) -> list[DigestEntry]:
        rows = conn.execute(
            sa.select(digest_table.c.key, digest_table.c.entry)
            .where(digest_table.c.sent_at.is_(None))
            .order_by(digest_table.c.queued_at, digest_table.c.key)
            .limit(limit)
        ).all()
        conn.commit()
        entries, unreadable = [], []
        for row in rows:
            try:
                entries.append(DigestEntry.model_validate_json(row.entry))
            except ValidationError as exc:  # written by another version: never block the rest
                log.error(
                    "notifier.digest_entry_unreadable", key=row.key, entry=row.entry, error=str(exc)
                )
                unreadable.append(row.key)
        if unreadable:
            with self.engine.begin() as tx:
                tx.execute(digest_table.delete().where(digest_table.c.key.in_(unreadable)))
        return entries

    def last_sent_at(self, conn: Connection) -> datetime | None:
        value = conn.execute(sa.select(sa.func.max(digest_table.c.sent_at))).scalar()
        conn.commit()
        return _utc(value)

    def mark_done(
        self, entries: list[DigestEntry], events: list[CloudEvent], now: datetime, status: str
    ) -> None:
        """The digest went out (`sent`) or never can (`failed`): the entries leave the
        queue, their keys go in the ledger, their events in the outbox, in one transaction."""
        keys = [e.notification.notification_key for e in entries]
        with self.engine.begin() as conn:
            conn.execute(
                digest_table.update().where(digest_table.c.key.in_(keys)).values(sent_at=now)
            )
            conn.execute(ledger_table.delete().where(ledger_table.c.key.in_(keys)))
            conn.execute(
                ledger_table.insert(), [{"key": k, "status": status, "at": now} for k in keys]
            )
            rows = [
                {"event_id": ev.id, "routing_key": ev.routing_key, "body": ev.model_dump_json()}
                for ev in events
            ]
            conn.execute(
                self._insert(outbox_table).on_conflict_do_nothing(index_elements=["event_id"]),
                rows,
            )

    def unpublished(self, limit: int = 500) -> list[OutboxRow]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(outbox_table)
                .where(outbox_table.c.sent_at.is_(None))
                .order_by(outbox_table.c.id)
                .limit(limit)
            ).all()
        return [OutboxRow(r.id, r.event_id, r.routing_key, r.body) for r in rows]


def prune_job(now: datetime, keep_s: float) -> PruneJob:
    """Team notices sent (or failed for good) more than `keep_s` before `now`."""
    sent = ended_before(digest_table.c.sent_at, now, keep_s)
    return PruneJob("digest", digest_table, digest_table.c.key, sent)


def _unlock(conn: Connection) -> None:
    """Release the flush lock. A failed statement leaves the transaction aborted, and a
    pooled connection keeps session locks: roll back first, and if the unlock still
    fails end the session, which releases the lock with it."""
    try:
        conn.rollback()
        conn.execute(sa.select(sa.func.pg_advisory_unlock(FLUSH_LOCK)))
        conn.commit()
    except SQLAlchemyError:
        conn.invalidate()
