"""The notifier's memory: what it knows per ticket, and every notification key sent.

Same store kinds as sla_timer (SQLite by default, PostgreSQL when configured). A key in
the ledger as `sent` is never sent again, whatever is redelivered or replayed.
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.notifier.notes import TicketNotes

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
outbox_table = sa.Table(  # escalation.sent of digest entries, published by the digest worker
    "notifier_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("routing_key", sa.String(128), nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_notifier_outbox_unsent", "sent_at", "id"),
)


class Ledger:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def migrate(self) -> None:
        with self.engine.begin() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(815002)"))
            metadata.create_all(conn)

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
