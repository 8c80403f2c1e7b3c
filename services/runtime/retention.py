"""Pruning what a store no longer needs, in small batches, on a thread of its own.

A stateful service keeps rows that matter only for a while: ids of events it handled
(to drop a redelivery), outbox rows already confirmed by the broker, notification keys
already sent. Each store names those rows as `PruneJob`s for a given `now` (the cutoff
is `cutoff(now, keep_s)`, pure); `Pruner` deletes them every `PRUNE_EVERY_S`, at most
`PRUNE_BATCH` rows per transaction with a pause between transactions, so the write lock
is never held for long and the consume loop and scheduler get their turn. Work still to
do (an unsent outbox row, an open clock, a pending send) is never a job's row.

A row pruned is forgotten: a redelivery of its event after the retention is handled
again. Retention must therefore exceed the longest redelivery window (retries, a
dead letter replayed by an operator); see docs/retention.md.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from pydantic import Field
from sqlalchemy.engine import Engine

from services.runtime.config import RuntimeSettings
from services.runtime.events import now_utc

log = structlog.get_logger("runtime.retention")

DAY_S = 86400.0
PAUSE_S = 0.05  # between two batches: a waiting writer takes the lock meanwhile


class RetentionSettings(RuntimeSettings):
    """Retention of what every stateful service keeps; services add their own kinds."""

    outbox_retention_s: float = Field(DAY_S, alias="OUTBOX_RETENTION_S", gt=0)
    prune_every_s: float = Field(60.0, alias="PRUNE_EVERY_S", gt=0)
    prune_batch: int = Field(1000, alias="PRUNE_BATCH", ge=1, le=100_000)


def cutoff(now: datetime, keep_s: float) -> datetime:
    """The oldest moment still kept: a row finished before it may go (UTC, as stored)."""
    return now.astimezone(UTC) - timedelta(seconds=keep_s)


def ended_before(column: sa.Column[Any], now: datetime, keep_s: float) -> sa.ColumnElement[bool]:
    """Rows whose `column` (a sent or done time; NULL while still to do) is older than
    `keep_s` seconds before `now`."""
    return sa.and_(column.is_not(None), column < cutoff(now, keep_s))


@dataclass(frozen=True)
class PruneJob:
    """Rows of `table` (by primary key `key`) that `expired` says may be deleted."""

    name: str
    table: sa.Table
    key: sa.Column[Any]
    expired: sa.ColumnElement[bool]


def delete_batch(engine: Engine, job: PruneJob, limit: int) -> int:
    """Delete at most `limit` of `job`'s rows in one short transaction; how many went."""
    pick = sa.select(job.key).where(job.expired).limit(limit)
    if engine.dialect.name == "postgresql":
        # Replicas prune side by side: each skips the rows another is deleting.
        pick = pick.with_for_update(skip_locked=True)
    with engine.begin() as conn:
        deleted = conn.execute(job.table.delete().where(job.key.in_(pick.scalar_subquery())))
    return int(deleted.rowcount or 0)


class Pruner:
    """Every `every_s`, delete the rows of `jobs(now)` batch by batch until none is left
    (or `max_batches` per job and turn, so one turn never runs for long)."""

    def __init__(
        self,
        name: str,
        engine: Engine,
        jobs: Callable[[datetime], list[PruneJob]],
        every_s: float = 60.0,
        batch: int = 1000,
        clock: Callable[[], datetime] = now_utc,
        max_batches: int = 100,
    ) -> None:
        self.name = name
        self.engine = engine
        self.jobs = jobs
        self.every_s = every_s
        self.batch = batch
        self.clock = clock
        self.max_batches = max_batches

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(self.every_s):
            try:
                self.turn(stop)
            except Exception as exc:  # the store is away, or a bug: the next turn tries again
                log.error(f"{self.name}.failed", retry_in_s=self.every_s, exc_info=exc)

    def turn(self, stop: threading.Event | None = None) -> dict[str, int]:
        """One round over every job; rows deleted per job."""
        pruned: dict[str, int] = {}
        for job in self.jobs(self.clock()):
            total = 0
            for _ in range(self.max_batches):
                deleted = delete_batch(self.engine, job, self.batch)
                total += deleted
                if deleted < self.batch or (stop is not None and stop.wait(PAUSE_S)):
                    break
            pruned[job.name] = total
        if any(pruned.values()):
            log.info(f"{self.name}.pruned", **pruned)
        return pruned
