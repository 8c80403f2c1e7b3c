"""`sla recompute`: migrate clocks to a new policy. What it touches, and why:

- Only **running** clocks whose pinned `policy_version` differs from the policy's (or
  the one ticket asked for). Stopped clocks are history. **Breached** clocks are left on
  the policy they breached under: the breach was reported against the terms in force,
  is never taken back or sent again, and the clock can no longer fire; moving its
  `due_at` would only make the record disagree with the breach event already sent.
- Deadlines are recomputed from the clock's ORIGINAL start with its facts (channel,
  role, current severity, call kind, premium), exactly like a reclassification.
- A warning already sent stays sent (`warned` is kept), so it is never re-sent; a
  warning or due that the new policy puts in the past fires at the sla_timer's next
  tick, with its lateness.
- When the new policy gives these facts no clock, the clock stops without a breach
  (state `exempted`), as `clock.reclassify` does.
- The clock is saved (new version, deadlines, `next_fire_at`) and, when the deadlines,
  rule or kind changed, an `SlaScheduled` event is written to the outbox in the SAME
  transaction; the sla_timer's scheduler relays the outbox to the broker.
- Clocks are read page by page (keyset on `ticket_id`, LIMIT), never all at once. Each
  clock is re-read under a write lock inside the transaction (PostgreSQL: FOR UPDATE;
  SQLite: a no-op UPDATE first takes the database write lock) so a running sla_timer
  firing the same clock meanwhile is never overwritten.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from schemas.events import EventData, SlaScheduled
from services.sla_timer.clock import Clock, Outcome, apply_pauses
from services.sla_timer.policy import Policy, compute_deadlines
from services.sla_timer.service import SlaTimer
from services.sla_timer.store import ClockStore, clocks

__all__ = ["Moved", "migrate_clock", "recompute"]

PAGE_SIZE = 200


class Moved(NamedTuple):
    """A clock migrated to the policy: `new_due` None means the new policy gives it no
    clock and it stopped without a breach. `old_due == new_due` means re-pinned only."""

    ticket_id: str
    old_due: datetime
    new_due: datetime | None


def migrate_clock(clock: Clock, policy: Policy, now: datetime) -> Outcome:
    """`clock` recomputed under `policy` from its original start (pure; see module doc).

    The outcome's events hold one SlaScheduled when the deadlines, rule or kind changed.
    """
    deadlines = compute_deadlines(
        policy,
        channel=clock.channel,
        role=clock.role,
        severity=clock.severity,
        call_kind=clock.call_kind,
        premium=clock.premium,
        started_at=clock.started_at,
        metric=clock.metric,
    )
    if deadlines is None:
        stopped = clock.model_copy(
            update={"state": "exempted", "stopped_at": now, "policy_version": policy.version}
        )
        return stopped, []
    due_at = deadlines.due_at.astimezone(UTC)
    warn_at = deadlines.warn_at.astimezone(UTC) if deadlines.warn_at else None
    moved = clock.model_copy(
        update={
            "rule": deadlines.rule,
            "guaranteed": deadlines.guaranteed,
            "calendar": deadlines.calendar,
            "policy_version": deadlines.policy_version,
            "pause_on_wait": deadlines.pause,
            "resume_on_reply": deadlines.resume_on_reply,
            "due_at": due_at,
            "warn_at": warn_at,
        }
    )
    if clock.pauses:  # the recomputed deadline is start + budget + every pause
        cal = policy.calendars[moved.calendar]
        moved = apply_pauses(moved, cal, clock.pauses, due_at, warn_at, now)
    before = (clock.rule, clock.guaranteed, clock.calendar, clock.due_at, clock.warn_at)
    after = (moved.rule, moved.guaranteed, moved.calendar, moved.due_at, moved.warn_at)
    if before == after:
        return moved, []
    event: EventData = SlaScheduled(**moved._base(), warn_at=moved.warn_at, calendar=moved.calendar)
    return moved, [(event, moved.cause(f"recompute:{policy.version}:{due_at.isoformat()}"))]


def _page(
    conn: Connection, version: str, after: str | None, ticket_id: str | None, limit: int
) -> list[str]:
    query = sa.select(clocks.c.ticket_id).where(
        clocks.c.state == "running", clocks.c.policy_version != version
    )
    if ticket_id is not None:  # every clock of the ticket (keys: see clock_key)
        query = query.where(
            sa.or_(clocks.c.ticket_id == ticket_id, clocks.c.ticket_id.like(f"{ticket_id}/%"))
        )
    if after is not None:
        query = query.where(clocks.c.ticket_id > after)
    return list(conn.execute(query.order_by(clocks.c.ticket_id).limit(limit)).scalars())


def _write_lock(conn: Connection, ticket_id: str) -> None:
    # SQLite (pysqlite) only opens a transaction at the first write, and `load(lock=True)`
    # locks nothing there: write first, so the re-read below cannot go stale before the
    # save. On PostgreSQL this locks the row, like FOR UPDATE.
    conn.execute(
        clocks.update().where(clocks.c.ticket_id == ticket_id).values(ticket_id=clocks.c.ticket_id)
    )


def recompute(
    store: ClockStore,
    policy: Policy,
    *,
    ticket_id: str | None = None,
    now: datetime,
    page_size: int = PAGE_SIZE,
) -> list[Moved]:
    """Migrate running clocks pinned to another policy version (all, or `ticket_id`'s)
    to `policy`; returns one `Moved` per migrated clock, in ticket id order."""
    timer = SlaTimer(store, policy, clock=lambda: now)
    moved: list[Moved] = []
    after: str | None = None
    while True:
        with store.engine.connect() as conn:
            ids = _page(conn, policy.version, after, ticket_id, page_size)
        if not ids:
            return moved
        with store.transaction() as conn:
            for tid in ids:
                _write_lock(conn, tid)
                stored = store.load(conn, tid, lock=True)
                if stored is None:
                    continue
                clock = Clock.model_validate(stored)
                if clock.state != "running" or clock.policy_version == policy.version:
                    continue  # fired, stopped or migrated since the page was read
                new = timer.commit(conn, migrate_clock(clock, policy, now), now)
                new_due = new.due_at if new.state == "running" else None
                moved.append(Moved(tid, clock.due_at, new_due))
        after = ids[-1]
