"""The notifier's memory: what it knows per ticket, and every notification key sent.

Same store kinds as sla_timer (SQLite by default, PostgreSQL when configured). A key in
the ledger as `sent` is never sent again, whatever is redelivered or replayed, for as
long as it is kept: `prune_jobs` names the keys and outbox rows past their retention
(services.runtime.retention).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from services.common.store_engine import reading
from services.notifier.notes import TicketNotes
from services.runtime.outbox import OutboxRow
from services.runtime.retention import PruneJob, cutoff, ended_before

metadata = sa.MetaData()
notes_table = sa.Table(
    "notifier_notes",
    metadata,
    sa.Column("ticket_id", sa.String(64), primary_key=True),
    sa.Column("data", sa.Text, nullable=False),
)
ledger_table = sa.Table(
    "notifier_ledger",
    metadata,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("detail", sa.Text, nullable=True),
    sa.Index("ix_notifier_ledger_at", "at"),  # pruning reads the oldest
)
digest_table = sa.Table(  # team notices waiting for the next digest (services.notifier.digest)
    "notifier_digest",
    metadata,
    sa.Column("key", sa.String(400), primary_key=True),
    sa.Column("entry", sa.Text, nullable=False),
    sa.Column("queued_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_notifier_digest_pending", "sent_at", "queued_at"),
)
outbox_table = sa.Table(  # escalation events and dead letters, published by the relay
    "notifier_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("routing_key", sa.String(128), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    # Added in schema 2 (migrate adds them to older stores):
    sa.Column("exchange", sa.String(128), nullable=False, server_default="support.events"),
    sa.Column("headers", sa.Text, nullable=True),
    sa.Column(
        "content_type",
        sa.String(128),
        nullable=False,
        server_default="application/cloudevents+json",
    ),
    sa.Index("ix_notifier_outbox_unsent", "sent_at", "id"),
)
ADDED_OUTBOX_COLUMNS = ("exchange", "headers", "content_type")


class Ledger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def migrate(self) -> None:
        import services.notifier.sends  # noqa: F401 - its table is part of the schema

        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(815002)"))
            metadata.create_all(conn)
            for table in metadata.sorted_tables:  # create_all skips indexes added later
                for index in table.indexes:
                    index.create(conn, checkfirst=True)
            have = {c["name"] for c in sa.inspect(conn).get_columns("notifier_outbox")}
            for name in ADDED_OUTBOX_COLUMNS:
                if name not in have:
                    column = outbox_table.c[name]
                    kind = column.type.compile(conn.dialect)
                    default = column.server_default
                    extra = ""
                    if default is not None:
                        extra = f" NOT NULL DEFAULT '{default.arg}'"  # type: ignore[attr-defined]
                    conn.execute(
                        sa.text(f"ALTER TABLE notifier_outbox ADD COLUMN {name} {kind}{extra}")
                    )

    # -- in a transaction of the caller's (the consume loop's batch, the sender's turn) --
    def notes_in(self, conn: Connection, ticket_ids: Iterable[str]) -> dict[str, TicketNotes]:
        ids = list(set(ticket_ids))
        if not ids:
            return {}
        rows = conn.execute(
            sa.select(notes_table.c.ticket_id, notes_table.c.data).where(
                notes_table.c.ticket_id.in_(ids)
            )
        )
        return {r.ticket_id: TicketNotes.model_validate_json(r.data) for r in rows}

    def save_notes_in(self, conn: Connection, notes: list[TicketNotes]) -> None:
        """Upsert the batch's notes: one statement, whether a ticket has notes yet or not."""
        rows = [{"ticket_id": n.ticket_id, "data": n.model_dump_json()} for n in notes]
        if rows:
            insert = postgresql_insert if self.is_postgres else sqlite_insert
            upsert = insert(notes_table)
            # NOTE: an executemany, not one VALUES list: SQLAlchemy compiles a multi-row
            # INSERT afresh for every execution (~4x the client CPU of the whole batch).
            conn.execute(
                upsert.on_conflict_do_update(
                    index_elements=["ticket_id"], set_={"data": upsert.excluded.data}
                ),
                rows,
            )

    def add_outbox(self, conn: Connection, rows: list[dict[str, Any]]) -> None:
        """Rows of event_id, routing_key, body (and exchange, headers, content_type)."""
        # NOTE: a multi-row insert takes its columns from the first row: give every row
        # all of them, or a dead letter after an event would lose its exchange.
        defaults = {
            "exchange": "support.events",
            "headers": None,
            "content_type": "application/cloudevents+json",
        }
        rows = [defaults | row for row in rows]
        if rows:
            insert = postgresql_insert if self.is_postgres else sqlite_insert
            conn.execute(
                insert(outbox_table).on_conflict_do_nothing(index_elements=["event_id"]), rows
            )

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    # -- the outbox relay (services.runtime.outbox.OutboxRelay) -------------------------
    def unsent(self, limit: int) -> list[OutboxRow]:
        query = (
            sa.select(outbox_table)
            .where(outbox_table.c.sent_at.is_(None))
            .order_by(outbox_table.c.id)
            .limit(limit)
        )
        with reading(self.engine) as conn:
            return [
                OutboxRow(
                    r.id,
                    r.event_id,
                    r.routing_key,
                    r.body,
                    exchange=r.exchange,
                    headers=OutboxRow.headers_from(r.headers),
                    content_type=r.content_type,
                )
                for r in conn.execute(query)
            ]

    def mark_sent(self, ids: list[int]) -> None:
        if ids:
            with self.engine.begin() as conn:
                conn.execute(
                    outbox_table.update()
                    .where(outbox_table.c.id.in_(ids))
                    .values(sent_at=datetime.now(UTC))
                )

    def notes(self, ticket_id: str) -> TicketNotes | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(notes_table.c.data).where(notes_table.c.ticket_id == ticket_id)
            ).first()
        return TicketNotes.model_validate_json(row.data) if row else None

    def save_notes(self, notes: TicketNotes) -> None:
        data = notes.model_dump_json()
        with self.engine.begin() as conn:
            updated = conn.execute(
                notes_table.update()
                .where(notes_table.c.ticket_id == notes.ticket_id)
                .values(data=data)
            )
            if updated.rowcount == 0:
                conn.execute(notes_table.insert().values(ticket_id=notes.ticket_id, data=data))

    def was_sent(self, key: str) -> bool:
        return self.sent_at(key) is not None

    def sent_at(self, key: str) -> datetime | None:
        """When `key` was sent, or None if it was not (yet)."""
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(ledger_table.c.status, ledger_table.c.at).where(ledger_table.c.key == key)
            ).first()
        if row is None or row.status != "sent":
            return None
        at: datetime = row.at
        return at if at.tzinfo else at.replace(tzinfo=UTC)  # NOTE: SQLite drops the zone

    def record(self, key: str, status: str, now: datetime, detail: str | None = None) -> None:
        with self.engine.begin() as conn:
            updated = conn.execute(
                ledger_table.update()
                .where(ledger_table.c.key == key)
                .values(status=status, at=now, detail=detail)
            )
            if updated.rowcount == 0:
                conn.execute(
                    ledger_table.insert().values(key=key, status=status, at=now, detail=detail)
                )


def prune_jobs(now: datetime, outbox_s: float, keys_s: float) -> list[PruneJob]:
    """Outbox rows sent more than `outbox_s` ago and ledger keys recorded more than
    `keys_s` ago; unsent outbox rows never."""
    sent = ended_before(outbox_table.c.sent_at, now, outbox_s)
    return [
        PruneJob("outbox", outbox_table, outbox_table.c.id, sent),
        PruneJob(
            "ledger", ledger_table, ledger_table.c.key, ledger_table.c.at < cutoff(now, keys_s)
        ),
    ]
