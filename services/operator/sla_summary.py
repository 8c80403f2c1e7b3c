"""What `status` says about the SLA store: open clocks, next deadlines, recent breaches.

Read-only: a missing SQLite file is reported, never created, and nothing is migrated.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from services.common.store_engine import StoreUrlError, engine_for, is_postgres_url, sqlite_path
from services.sla_timer.store import ClockStore, clocks
from services.sla_timer.store_reads import OPEN_STATES

BREACH_WINDOW = timedelta(hours=1)


@dataclass(frozen=True)
class Deadline:
    ticket_id: str
    kind: str  # guaranteed | target
    severity: str
    fires: str  # what fires next: warning | breach
    fires_at: str
    due_at: str
    metric: str = "first_response"


@dataclass(frozen=True)
class Breach:
    ticket_id: str
    kind: str
    severity: str
    due_at: str
    breached_at: str
    metric: str = "first_response"


@dataclass
class SlaSummary:
    store: str
    error: str | None = None
    by_state: dict[str, int] = field(default_factory=dict)
    next_deadlines: list[Deadline] = field(default_factory=list)
    breaches_last_hour: list[Breach] = field(default_factory=list)

    @property
    def open(self) -> dict[str, int]:
        return {state: self.by_state.get(state, 0) for state in OPEN_STATES}

    def to_json(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "error": self.error,
            "open": self.open,
            "by_state": self.by_state,
            "next_deadlines": [asdict(d) for d in self.next_deadlines],
            "breaches_last_hour": [asdict(b) for b in self.breaches_last_hour],
        }


def describe_store(url: str | None) -> str:
    """Where the store is, without a password."""
    if is_postgres_url(url):
        return str(sa.engine.make_url(str(url)).render_as_string(hide_password=True))
    return url or "sla_timer.db"


class StoreUnusable(Exception):
    """The SLA store cannot be read: it does not exist, has no clocks, does not answer."""


def open_clock_store(url: str | None, read_only: bool = False) -> ClockStore:
    """The SLA store at `url` for an operator's command. One that does not exist is
    StoreUnusable, never created empty; `read_only` opens it so and migrates nothing."""
    where = describe_store(url)
    try:
        path = sqlite_path(url)
        if path is not None and not path.is_file():
            raise StoreUnusable(f"no SLA store at {where}: the file does not exist")
        store = ClockStore(engine_for(url, read_only=read_only))
    except StoreUrlError as exc:
        raise StoreUnusable(str(exc)) from None
    try:
        if not read_only:
            store.migrate()
        elif not sa.inspect(store.engine).has_table(clocks.name):
            raise StoreUnusable(f"{where} has no SLA clocks table (no sla_timer ran on it)")
    except sa.exc.SQLAlchemyError as exc:
        store.engine.dispose()
        detail = str(exc).strip().splitlines()[0]
        raise StoreUnusable(f"cannot open {where}: {type(exc).__name__}: {detail}") from None
    except StoreUnusable:
        store.engine.dispose()
        raise
    return store


def summarize(url: str | None, now: datetime, upcoming: int = 5) -> SlaSummary:
    summary = SlaSummary(describe_store(url))
    try:
        engine = open_clock_store(url, read_only=True).engine
    except StoreUnusable as exc:
        summary.error = f"{exc} (set SLA_STORE_URL)"
        return summary
    try:
        _fill(summary, engine, now, upcoming)
    except sa.exc.SQLAlchemyError as exc:
        summary.error = f"cannot read {summary.store}: {type(exc).__name__}: {exc}"
    finally:
        engine.dispose()
    return summary


def _fill(summary: SlaSummary, engine: Engine, now: datetime, upcoming: int) -> None:
    cutoff = now - BREACH_WINDOW
    by_state = sa.select(clocks.c.state, sa.func.count()).group_by(clocks.c.state)
    # Only running clocks fire; `next_fire_at` is indexed, so this reads a few rows.
    soonest = (
        sa.select(clocks.c.next_fire_at, clocks.c.data)
        .where(clocks.c.state == "running", clocks.c.next_fire_at.is_not(None))
        .order_by(clocks.c.next_fire_at)
        .limit(upcoming)
    )
    # A breach leaves the clock breached, or responded_late once answered; either
    # way the row was updated at or after the breach.
    breached = sa.select(clocks.c.data).where(
        clocks.c.state.in_(("breached", "responded_late")), clocks.c.updated_at >= cutoff
    )
    with engine.connect() as conn:
        summary.by_state = {str(s): int(n) for s, n in conn.execute(by_state).all()}
        summary.next_deadlines = [
            _deadline(json.loads(row.data), row.next_fire_at) for row in conn.execute(soonest)
        ]
        recent = [_breach(json.loads(row.data)) for row in conn.execute(breached)]
    summary.breaches_last_hour = sorted(
        (b for b in recent if b is not None and _when(b.breached_at) >= cutoff),
        key=lambda b: b.breached_at,
        reverse=True,
    )


def _when(value: str | datetime) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(value)
    # NOTE: SQLite hands back naive datetimes; everything stored is UTC.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _iso(value: str | datetime) -> str:
    return _when(value).astimezone(UTC).isoformat()


def _kind(data: dict[str, Any]) -> str:
    return "guaranteed" if data.get("guaranteed") else "target"


def _deadline(data: dict[str, Any], fires_at: datetime) -> Deadline:
    due = _when(data["due_at"])
    return Deadline(
        ticket_id=str(data["ticket_id"]),
        kind=_kind(data),
        severity=str(data.get("severity", "")),
        fires="breach" if _when(fires_at) >= due else "warning",
        fires_at=_iso(fires_at),
        due_at=_iso(due),
        metric=str(data.get("metric", "first_response")),
    )


def _breach(data: dict[str, Any]) -> Breach | None:
    if not data.get("breached_at"):
        return None  # answered late before the scheduler fired: no breach event
    return Breach(
        ticket_id=str(data["ticket_id"]),
        kind=_kind(data),
        severity=str(data.get("severity", "")),
        due_at=_iso(data["due_at"]),
        breached_at=_iso(data["breached_at"]),
        metric=str(data.get("metric", "first_response")),
    )
