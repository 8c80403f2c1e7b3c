"""Durable SLA clocks: SQLite (WAL) by default, PostgreSQL to share between replicas.

One interface over SQLAlchemy Core. A state change and the events it causes are
written in one transaction (the outbox); the relay publishes the outbox with confirms
and marks rows sent. Due clocks are fetched from an index on `next_fire_at`, never
all held in memory. On PostgreSQL, rows are claimed with FOR UPDATE SKIP LOCKED so
several replicas never fire the same clock twice. What is kept only for a while
(processed ids, sent outbox rows, updates parked for a ticket that never arrived) is
pruned by `prune_jobs` (services.runtime.retention); clocks, open or closed, stay.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import IO, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from services.common.store_engine import engine_for, reading, utc
from services.runtime.outbox import OutboxRow
from services.runtime.retention import PruneJob, cutoff, ended_before

__all__ = ["ClockStore", "engine_for", "reading"]

SCHEMA_VERSION = 1
metadata = sa.MetaData()

clocks = sa.Table(
    "sla_clocks",
    metadata,
    sa.Column("ticket_id", sa.String(64), primary_key=True),
    sa.Column("state", sa.String(24), nullable=False),
    sa.Column("next_fire_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("policy_version", sa.String(64), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_sla_clocks_next_fire_at", "next_fire_at"),
    # Counting open clocks at scrape time (store_reads.open_clock_counts) reads this
    # index, not a million rows of clock data.
    sa.Index("ix_sla_clocks_state", "state"),
)
processed = sa.Table(
    "sla_processed_events",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_sla_processed_events_at", "at"),  # pruning reads the oldest
)
early = sa.Table(  # updates that arrived before their ticket.opened
    "sla_early_updates",
    metadata,
    sa.Column("event_id", sa.String(64), primary_key=True),
    sa.Column("ticket_id", sa.String(64), nullable=False, index=True),
    sa.Column("body", sa.Text, nullable=False),
    # Added later (migrate adds it to older stores and dates their rows to the upgrade).
    sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_sla_early_updates_parked_at", "parked_at"),
)
outbox = sa.Table(
    "sla_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("routing_key", sa.String(128), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_sla_outbox_unsent", "sent_at", "id"),
)
schema_info = sa.Table("sla_schema", metadata, sa.Column("version", sa.Integer, nullable=False))


class ClockStore:
    def __init__(self, engine: Engine, lock: IO[str] | None = None) -> None:
        self.engine = engine
        self.lock = lock  # SQLite: the single-replica lock, held while the store lives
        self.is_postgres = engine.dialect.name == "postgresql"

    def migrate(self) -> None:
        """Create or upgrade the schema; safe to run at every start."""
        with self.engine.begin() as conn:
            if self.is_postgres:  # replicas starting together must not race on DDL
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(815001)"))
            metadata.create_all(conn)
            self._add_parked_at(conn)
            for table in (clocks, processed, early):
                for index in table.indexes:  # create_all skips indexes added to a table later
                    index.create(conn, checkfirst=True)
            version = conn.execute(sa.select(schema_info.c.version)).scalar()
            if version is None:
                conn.execute(schema_info.insert().values(version=SCHEMA_VERSION))
            elif version > SCHEMA_VERSION:
                raise RuntimeError(
                    f"store schema v{version} is newer than this sla_timer (v{SCHEMA_VERSION})"
                )

    @staticmethod
    def _add_parked_at(conn: Connection) -> None:
        if "parked_at" in {c["name"] for c in sa.inspect(conn).get_columns("sla_early_updates")}:
            return
        kind = early.c.parked_at.type.compile(conn.dialect)
        conn.execute(sa.text(f"ALTER TABLE sla_early_updates ADD COLUMN parked_at {kind}"))
        conn.execute(early.update().values(parked_at=datetime.now(UTC)))

    def prune_jobs(
        self, now: datetime, processed_s: float, outbox_s: float, early_s: float
    ) -> list[PruneJob]:
        """What may go by `now`: ids processed more than `processed_s` ago, outbox rows
        sent more than `outbox_s` ago, updates parked more than `early_s` ago (their
        ticket never came). Unsent rows and clocks are never among them."""
        return [
            PruneJob(
                "processed",
                processed,
                processed.c.event_id,
                processed.c.at < cutoff(now, processed_s),
            ),
            PruneJob("outbox", outbox, outbox.c.id, ended_before(outbox.c.sent_at, now, outbox_s)),
            PruneJob("early", early, early.c.event_id, early.c.parked_at < cutoff(now, early_s)),
        ]

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        with self.engine.begin() as conn:
            yield conn

    # -- inside a transaction -------------------------------------------------------------
    def seen(self, conn: Connection, event_id: str) -> bool:
        return (
            conn.execute(
                sa.select(processed.c.event_id).where(processed.c.event_id == event_id)
            ).first()
            is not None
        )

    def mark_seen(self, conn: Connection, event_id: str, now: datetime) -> None:
        conn.execute(processed.insert().values(event_id=event_id, at=now))

    def load(self, conn: Connection, ticket_id: str, lock: bool = False) -> dict[str, Any] | None:
        query = sa.select(clocks.c.data).where(clocks.c.ticket_id == ticket_id)
        if lock and self.is_postgres:
            query = query.with_for_update()
        row = conn.execute(query).first()
        return json.loads(row.data) if row else None

    def save(
        self,
        conn: Connection,
        ticket_id: str,
        data: dict[str, Any],
        *,
        state: str,
        next_fire_at: datetime | None,
        policy_version: str,
        now: datetime,
    ) -> None:
        values = {
            "state": state,
            "next_fire_at": next_fire_at,
            "policy_version": policy_version,
            "data": json.dumps(data),
            "updated_at": now,
        }
        updated = conn.execute(
            clocks.update().where(clocks.c.ticket_id == ticket_id).values(**values)
        )
        if updated.rowcount == 0:
            conn.execute(clocks.insert().values(ticket_id=ticket_id, **values))

    def add_outbox(
        self, conn: Connection, event_id: str, routing_key: str, body: str, now: datetime
    ) -> None:
        insert = postgresql_insert if self.is_postgres else sqlite_insert
        statement = insert(outbox).values(
            event_id=event_id, routing_key=routing_key, body=body, created_at=now
        )
        # The same event id is never queued twice (one statement, no read first).
        conn.execute(statement.on_conflict_do_nothing(index_elements=["event_id"]))

    def update_many(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Existing clocks, one statement for the batch (the scheduler's hot path).
        Each row: ticket_id, state, next_fire_at, policy_version, data (dict), updated_at."""
        if not rows:
            return
        statement = (
            clocks.update()
            .where(clocks.c.ticket_id == sa.bindparam("key"))
            .values(
                state=sa.bindparam("state"),
                next_fire_at=sa.bindparam("next_fire_at"),
                policy_version=sa.bindparam("policy_version"),
                data=sa.bindparam("data"),
                updated_at=sa.bindparam("updated_at"),
            )
        )
        params = [
            {**{k: v for k, v in row.items() if k != "ticket_id"}, "key": row["ticket_id"]}
            | {"data": json.dumps(row["data"])}
            for row in rows
        ]
        conn.execute(statement, params)

    def add_outbox_many(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Rows of event_id, routing_key, body, created_at; known event ids are skipped."""
        if rows:
            insert = postgresql_insert if self.is_postgres else sqlite_insert
            conn.execute(insert(outbox).on_conflict_do_nothing(index_elements=["event_id"]), rows)

    def park_early(
        self, conn: Connection, event_id: str, ticket_id: str, body: str, now: datetime
    ) -> None:
        conn.execute(
            early.insert().values(event_id=event_id, ticket_id=ticket_id, body=body, parked_at=now)
        )

    def take_early(self, conn: Connection, ticket_id: str) -> list[str]:
        rows = conn.execute(
            sa.select(early.c.event_id, early.c.body).where(early.c.ticket_id == ticket_id)
        ).all()
        conn.execute(early.delete().where(early.c.ticket_id == ticket_id))
        return [row.body for row in rows]

    def claim_due(self, conn: Connection, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Clocks due by `now`, earliest first; locked against other replicas."""
        query = (
            sa.select(clocks.c.data)
            .where(clocks.c.next_fire_at <= now)
            .order_by(clocks.c.next_fire_at)
            .limit(limit)
        )
        if self.is_postgres:
            query = query.with_for_update(skip_locked=True)
        return [json.loads(row.data) for row in conn.execute(query)]

    # -- batches (the consume loop's group commit) -----------------------------------------
    def seen_many(self, conn: Connection, event_ids: Iterable[str]) -> set[str]:
        ids = list(set(event_ids))
        if not ids:
            return set()
        query = sa.select(processed.c.event_id).where(processed.c.event_id.in_(ids))
        return {row.event_id for row in conn.execute(query)}

    def mark_seen_many(self, conn: Connection, event_ids: list[str], now: datetime) -> None:
        if event_ids:
            rows = [{"event_id": event_id, "at": now} for event_id in event_ids]
            conn.execute(
                self._insert(processed).on_conflict_do_nothing(index_elements=["event_id"]), rows
            )

    def load_many(
        self, conn: Connection, ticket_ids: Iterable[str], lock: bool = False
    ) -> dict[str, dict[str, Any]]:
        ids = list(set(ticket_ids))
        if not ids:
            return {}
        query = sa.select(clocks.c.ticket_id, clocks.c.data).where(clocks.c.ticket_id.in_(ids))
        if lock and self.is_postgres:
            query = query.with_for_update()
        return {row.ticket_id: json.loads(row.data) for row in conn.execute(query)}

    def insert_many(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """New clocks (rows as for `update_many`), one statement for the batch."""
        if rows:
            conn.execute(clocks.insert(), [row | {"data": json.dumps(row["data"])} for row in rows])

    def early_for(self, conn: Connection, ticket_ids: Iterable[str]) -> dict[str, list[str]]:
        """Parked updates of these tickets, oldest first (kept until `drop_early`)."""
        ids = list(set(ticket_ids))
        found: dict[str, list[str]] = {}
        if ids:
            query = sa.select(early.c.ticket_id, early.c.body).where(early.c.ticket_id.in_(ids))
            for row in conn.execute(query):
                found.setdefault(row.ticket_id, []).append(row.body)
        return found

    def drop_early(self, conn: Connection, ticket_ids: list[str]) -> None:
        if ticket_ids:
            conn.execute(early.delete().where(early.c.ticket_id.in_(ticket_ids)))

    def park_early_many(self, conn: Connection, rows: list[dict[str, str]], now: datetime) -> None:
        """Rows of event_id, ticket_id, body, parked at `now`; an update parked before is
        kept once (with its first time: the retention counts from there)."""
        if rows:
            conn.execute(
                self._insert(early).on_conflict_do_nothing(index_elements=["event_id"]),
                [row | {"parked_at": now} for row in rows],
            )

    @property
    def _insert(self) -> Any:
        return postgresql_insert if self.is_postgres else sqlite_insert

    # -- the outbox relay (services.runtime.outbox.OutboxRelay) ---------------------------
    def unsent(self, limit: int) -> list[OutboxRow]:
        query = (
            sa.select(outbox.c.id, outbox.c.event_id, outbox.c.routing_key, outbox.c.body)
            .where(outbox.c.sent_at.is_(None))
            .order_by(outbox.c.id)
            .limit(limit)
        )
        with reading(self.engine) as conn:
            return [OutboxRow(r.id, r.event_id, r.routing_key, r.body) for r in conn.execute(query)]

    def mark_sent(self, ids: list[int], now: datetime | None = None) -> None:
        if ids:
            with self.transaction() as conn:
                conn.execute(
                    outbox.update()
                    .where(outbox.c.id.in_(ids))
                    .values(sent_at=now or datetime.now(UTC))
                )

    # -- reads ------------------------------------------------------------------------------
    def next_due(self) -> datetime | None:
        with reading(self.engine) as conn:
            return utc(conn.execute(sa.select(sa.func.min(clocks.c.next_fire_at))).scalar())

    def get(self, ticket_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            return self.load(conn, ticket_id)

    def get_all(self, ticket_id: str) -> list[dict[str, Any]]:
        """Every clock of the ticket, one per metric (keys: see `clock.clock_key`)."""
        query = sa.select(clocks.c.data).where(
            sa.or_(clocks.c.ticket_id == ticket_id, clocks.c.ticket_id.like(f"{ticket_id}/%"))
        )
        with reading(self.engine) as conn:
            found = [json.loads(row.data) for row in conn.execute(query)]
        order = ("first_response", "next_reply", "periodic_update", "resolution")
        return sorted(found, key=lambda d: order.index(d.get("metric", "first_response")))

    def counts_by_state(self) -> dict[str, int]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(clocks.c.state, sa.func.count()).group_by(clocks.c.state)
            ).all()
        return {row[0]: int(row[1]) for row in rows}
