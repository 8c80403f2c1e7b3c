"""The durable send queue: every notification to a person waits here until it is sent,
given up or no longer needed. The row is also the ledger: a key is queued once, so a
redelivered or replayed event never sends twice.

The consume loop queues sends in the same transaction as the ticket notes and acks its
input; the sender (services.notifier.sender) claims due rows, sends them concurrently
and records each result, with the escalation event it causes, in one transaction.
A claimed row carries a lease: a sender that died mid-send leaves it to be claimed again
once the lease runs out (which can repeat a send that was in flight at the crash: the
PagerDuty dedup_key and the email's Message-ID make that recognisable).
Sent and cancelled rows are pruned after their retention (`prune_job`); pending and
dead ones (a dead letter an operator may replay) stay.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from services.common.store_engine import reading, utc
from services.notifier.decisions import Notification
from services.notifier.ledger import metadata
from services.runtime.retention import PruneJob, ended_before

Status = Literal["pending", "sent", "dead", "cancelled"]
PRIORITY = {"page": 0, "remind": 1, "notify": 2}  # lower first: pages never wait

sends_table = sa.Table(
    "notifier_sends",
    metadata,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("ticket_id", sa.String(64), nullable=False, index=True),
    sa.Column("priority", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("notification", sa.Text, nullable=False),
    sa.Column("correlation_id", sa.String(200), nullable=False),
    sa.Column("unless_acknowledged", sa.Boolean, nullable=False),
    sa.Column("method_index", sa.Integer, nullable=False),
    # The contact method the next attempt uses (methods[method_index]): sends are claimed
    # per channel pool, so a full pool never keeps other channels' sends waiting.
    sa.Column("method", sa.String(32), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("leased_until", sa.DateTime(timezone=True), nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("done_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("done_channel", sa.String(32), nullable=True),
    sa.Index("ix_notifier_sends_due", "status", "priority", "next_attempt_at"),
    sa.Index("ix_notifier_sends_done", "status", "done_at"),  # pruning
)
FINISHED = ("sent", "cancelled")  # done for good: kept only to drop a redelivery


@dataclass(frozen=True)
class SendRow:
    key: str
    notification: Notification
    correlation_id: str
    unless_acknowledged: bool
    status: Status
    method_index: int
    attempts: int
    queued_at: datetime
    last_error: str | None = None
    done_at: datetime | None = None
    done_channel: str | None = None

    @property
    def method(self) -> str:
        methods = self.notification.methods
        return methods[self.method_index % len(methods)]


def _row(r: Any) -> SendRow:
    return SendRow(
        key=r.key,
        notification=Notification.model_validate_json(r.notification),
        correlation_id=r.correlation_id,
        unless_acknowledged=bool(r.unless_acknowledged),
        status=r.status,
        method_index=r.method_index,
        attempts=r.attempts,
        queued_at=utc(r.queued_at) or datetime.now(UTC),
        last_error=r.last_error,
        done_at=utc(r.done_at),
        done_channel=r.done_channel,
    )


class SendQueue:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.is_postgres = engine.dialect.name == "postgresql"
        self._insert = postgresql_insert if self.is_postgres else sqlite_insert

    @staticmethod
    def values(
        n: Notification, correlation_id: str, unless_acknowledged: bool, now: datetime
    ) -> dict[str, Any]:
        return {
            "key": n.notification_key,
            "ticket_id": n.ticket_id,
            "priority": PRIORITY[n.kind] if n.action in ("trigger", "notify") else 1,
            "status": "pending",
            "notification": n.model_dump_json(),
            "correlation_id": correlation_id,
            "unless_acknowledged": unless_acknowledged,
            "method_index": 0,
            "method": n.channel,
            "attempts": 0,
            "queued_at": now,
            "next_attempt_at": now,
        }

    def add_many(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Queue sends; a key queued before (sent or not) is left as it is."""
        if rows:
            conn.execute(
                self._insert(sends_table).on_conflict_do_nothing(index_elements=["key"]), rows
            )

    def claim(
        self,
        now: datetime,
        limit: int,
        lease: timedelta,
        methods: list[str] | None = None,
        except_methods: list[str] | None = None,
    ) -> list[SendRow]:
        """Due sends, pages first, leased to this sender; replicas skip each other's.
        `methods` / `except_methods` pick the sends whose next attempt uses (or does not
        use) those contact methods."""
        due = sa.select(sends_table)
        if methods is not None:
            due = due.where(sends_table.c.method.in_(methods))
        if except_methods is not None:
            due = due.where(sends_table.c.method.not_in(except_methods))
        due = (
            due.where(sends_table.c.status == "pending")
            .where(sends_table.c.next_attempt_at <= now)
            .where(sa.or_(sends_table.c.leased_until.is_(None), sends_table.c.leased_until < now))
            .order_by(sends_table.c.priority, sends_table.c.next_attempt_at)
            .limit(limit)
        )
        if self.is_postgres:
            due = due.with_for_update(skip_locked=True)
        with self.engine.begin() as conn:
            rows = [_row(r) for r in conn.execute(due)]
            if rows:
                conn.execute(
                    sends_table.update()
                    .where(sends_table.c.key.in_([r.key for r in rows]))
                    .values(leased_until=now + lease)
                )
        return rows

    def renew(self, keys: list[str], until: datetime) -> None:
        """Extend the leases of sends this sender is still working on."""
        self._lease(keys, until)

    def release(self, keys: list[str]) -> None:
        """Give claimed sends back at once (not started, or the sender is stopping)."""
        self._lease(keys, None)

    def _lease(self, keys: list[str], until: datetime | None) -> None:
        if keys:
            with self.engine.begin() as conn:
                conn.execute(
                    sends_table.update()
                    .where(sends_table.c.key.in_(keys))
                    .where(sends_table.c.status == "pending")
                    .values(leased_until=until)
                )

    def get(self, conn: Connection, key: str) -> SendRow | None:
        found = conn.execute(sa.select(sends_table).where(sends_table.c.key == key)).first()
        return _row(found) if found else None

    def level_rows(self, conn: Connection, n: Notification) -> list[SendRow]:
        """The sends of the same ticket, reason and level as `n` (who else was paged)."""
        rows = conn.execute(sa.select(sends_table).where(sends_table.c.ticket_id == n.ticket_id))
        return [
            r
            for r in map(_row, rows)
            if r.notification.reason == n.reason and r.notification.level == n.level
        ]

    def people_paged(self, conn: Connection, n: Notification) -> set[str]:
        rows = conn.execute(sa.select(sends_table).where(sends_table.c.ticket_id == n.ticket_id))
        return {r.notification.person for r in map(_row, rows) if r.notification.reason == n.reason}

    def update(self, conn: Connection, key: str, **values: Any) -> None:
        if "method_index" in values:
            row = self.get(conn, key)
            if row is not None:
                methods = row.notification.methods
                values["method"] = methods[values["method_index"] % len(methods)]
        conn.execute(
            sends_table.update().where(sends_table.c.key == key).values(leased_until=None, **values)
        )

    def requeue(self, conn: Connection, key: str, now: datetime) -> None:
        """A replayed dead letter: a fresh retry budget from now."""
        self.update(
            conn,
            key,
            status="pending",
            method_index=0,
            attempts=0,
            queued_at=now,
            next_attempt_at=now,
            done_at=None,
        )

    def next_due(self, now: datetime) -> datetime | None:
        """When the next unleased pending send falls due (read without the write lock)."""
        query = (
            sa.select(sa.func.min(sends_table.c.next_attempt_at))
            .where(sends_table.c.status == "pending")
            .where(sa.or_(sends_table.c.leased_until.is_(None), sends_table.c.leased_until < now))
        )
        with reading(self.engine) as conn:
            return utc(conn.execute(query).scalar())

    def counts(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(sends_table.c.status, sa.func.count()).group_by(sends_table.c.status)
            ).all()
        return {str(status): int(count) for status, count in rows}


def prune_job(now: datetime, keep_s: float) -> PruneJob:
    """Sends finished (sent or cancelled) more than `keep_s` before `now`."""
    done = sa.and_(
        sends_table.c.status.in_(FINISHED), ended_before(sends_table.c.done_at, now, keep_s)
    )
    return PruneJob("sends", sends_table, sends_table.c.key, done)


def dead_letter_body(row: SendRow) -> str:
    """A given-up notification as a dead letter: enough to send it again when replayed."""
    return json.dumps(
        {
            "notification": row.notification.model_dump(mode="json"),
            "correlation_id": row.correlation_id,
            "unless_acknowledged": row.unless_acknowledged,
        }
    )
