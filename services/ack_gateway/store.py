"""The acknowledgements the gateway has sent: a used token (or PagerDuty event) id is
never published again (SQLite by default, PostgreSQL to share between replicas)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

metadata = sa.MetaData()
used_table = sa.Table(
    "ack_gateway_used",
    metadata,
    sa.Column("used_id", sa.String(80), primary_key=True),
    sa.Column("ticket_id", sa.String(64), nullable=False),
    sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
)


class UsedIds:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def migrate(self) -> None:
        metadata.create_all(self.engine)

    def seen(self, used_id: str) -> bool:
        query = sa.select(used_table.c.used_id).where(used_table.c.used_id == used_id)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def record(self, used_id: str, ticket_id: str, at: datetime) -> bool:
        """True when `used_id` is new (now recorded), False when it was recorded before."""
        row = {"used_id": used_id, "ticket_id": ticket_id, "used_at": at}
        try:
            with self.engine.begin() as conn:
                conn.execute(used_table.insert().values(row))
        except sa.exc.IntegrityError:
            return False
        return True
