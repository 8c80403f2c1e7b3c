"""Reads for probes and scrapes that must never queue behind the store's writers.

The SQLite engine begins every transaction IMMEDIATE (store.engine_for), taking the
write lock even to read. These go through a raw DBAPI connection instead, which on
SQLite runs in autocommit: under WAL a reader neither blocks nor waits for the writer.
Used by the notifier's ledger too (same engines).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.common.store_engine import fetch, ping
from services.sla_timer.store import clocks

__all__ = ["OPEN_STATES", "open_clock_counts", "ping"]

OPEN_STATES = ("running", "breached")  # not yet met, responded to, exempted or resolved


def open_clock_counts(engine: Engine) -> dict[str, int]:
    """Open clocks by state, from the index on `state`."""
    query = (
        sa.select(clocks.c.state, sa.func.count())
        .where(clocks.c.state.in_(OPEN_STATES))
        .group_by(clocks.c.state)
    )
    # Constants only (the open states), so inlining them is safe and dialect-correct.
    sql = str(query.compile(engine, compile_kwargs={"literal_binds": True}))
    counts = {state: 0 for state in OPEN_STATES}
    counts.update({str(state): int(count) for state, count in fetch(engine, sql)})
    return counts
