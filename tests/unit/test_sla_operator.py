"""`sla explain` and `sla recompute` as functions, against a SQLite store in tmp_path."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from rich.console import Console

from schemas.events import CloudEvent, SlaScheduled, SlaWarning, event_id
from schemas.inbound import Severity
from schemas.ticket import Channel, Submitter, SubmitterRole, Ticket
from services.sla_timer.clock import Clock, fire_due, open_clock, respond
from services.sla_timer.operator import explain_clock, recompute, render_explanation
from services.sla_timer.policy import Policy, default_policy_text, load_policy, parse_policy
from services.sla_timer.service import SlaTimer
from services.sla_timer.store import ClockStore, clocks, engine_for, outbox

AMS = ZoneInfo("Europe/Amsterdam")
START = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
M = timedelta(minutes=1)
DEFAULT = load_policy(None)


def new_policy(version: str = "2026-12-01", critical_budget: str = "20m") -> Policy:
    """The default policy with the business-critical email budget changed."""
    text = default_policy_text()
    assert text.count("budget: 30m") == 1
    text = text.replace('version: "2026-11-01"', f'version: "{version}"')
    return parse_policy(text.replace("budget: 30m", f"budget: {critical_budget}"))


def tid(n: int, channel: Channel = "email") -> str:
    return f"T-{channel}-{n:016x}"


def ticket(
    n: int,
    channel: Channel = "email",
    role: SubmitterRole = "super_admin",
    severity: Severity = "business_critical",
    created_at: datetime = START,
) -> Ticket:
    return Ticket(
        ticket_id=tid(n, channel),
        channel=channel,
        portal_id=4411,
        premium=True,
        submitter=Submitter(role=role),
        severity=severity,
        submitter_marked_critical=severity == "business_critical",
        created_at=created_at,
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ClockStore]:
    store = ClockStore(engine_for(str(tmp_path / "clocks.db")))
    store.migrate()
    yield store
    store.engine.dispose()


def seed(store: ClockStore, t: Ticket, policy: Policy = DEFAULT) -> Clock:
    outcome = open_clock(t, policy, f"corr-{t.ticket_id}")
    assert outcome is not None
    with store.transaction() as conn:
        return SlaTimer(store, policy).commit(conn, outcome, START)


def commit(store: ClockStore, outcome: Any) -> Clock:
    with store.transaction() as conn:
        clock: Clock = SlaTimer(store, DEFAULT).commit(conn, outcome, START)
        return clock


def stored(store: ClockStore, ticket_id: str) -> Clock:
    data = store.get(ticket_id)
    assert data is not None
    return Clock.model_validate(data)


def row(store: ClockStore, ticket_id: str) -> Any:
    with store.engine.connect() as conn:
        return conn.execute(sa.select(clocks).where(clocks.c.ticket_id == ticket_id)).one()


def outbox_events(store: ClockStore) -> list[CloudEvent]:
    with store.engine.connect() as conn:
        bodies = conn.execute(sa.select(outbox.c.body).order_by(outbox.c.id)).scalars().all()
    return [CloudEvent.model_validate_json(body) for body in bodies]


def utc(value: datetime | None) -> datetime | None:
    # SQLite gives naive datetimes back; everything stored is UTC
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


# --- explain ------------------------------------------------------------------------------


def test_explain_a_business_day_over_the_weekend() -> None:
    created = datetime(2026, 11, 27, 16, 0, tzinfo=AMS)  # Friday 16:00
    outcome = open_clock(
        ticket(1, role="user", severity="standard", created_at=created), DEFAULT, "c"
    )
    assert outcome is not None
    expl = explain_clock(outcome[0], DEFAULT)

    assert expl.rule == "not-super-admin" and not expl.guaranteed
    assert expl.policy_version == expl.current_policy_version == "2026-11-01"
    assert expl.budget == "1 business_day" and expl.warn == "1h before due"
    assert expl.calendar is not None
    assert (expl.calendar.name, expl.calendar.timezone) == ("support-hours", "Europe/Amsterdam")
    assert expl.calendar.hours == {d: ["09:00-17:30"] for d in ("mon", "tue", "wed", "thu", "fri")}
    assert expl.calendar.holidays == "NL"
    assert expl.started_at == datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
    assert expl.started_at.utcoffset() == timedelta(0)
    assert expl.started_local is not None and expl.due_local is not None
    assert expl.started_local.replace(tzinfo=None) == datetime(2026, 11, 27, 16, 0)
    assert expl.due_local.replace(tzinfo=None) == datetime(2026, 11, 30, 16, 0)  # Monday
    assert expl.due_at == datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
    assert expl.warn_local is not None
    assert expl.warn_local.replace(tzinfo=None) == datetime(2026, 11, 30, 15, 0)

    kinds = [(s.kind, s.start.astimezone(AMS), s.end.astimezone(AMS)) for s in expl.segments]
    assert kinds == [
        (
            "counted",
            datetime(2026, 11, 27, 16, 0, tzinfo=AMS),
            datetime(2026, 11, 27, 17, 30, tzinfo=AMS),
        ),
        (
            "night",
            datetime(2026, 11, 27, 17, 30, tzinfo=AMS),
            datetime(2026, 11, 28, 0, 0, tzinfo=AMS),
        ),
        (
            "weekend",
            datetime(2026, 11, 28, 0, 0, tzinfo=AMS),
            datetime(2026, 11, 30, 0, 0, tzinfo=AMS),
        ),
        (
            "night",
            datetime(2026, 11, 30, 0, 0, tzinfo=AMS),
            datetime(2026, 11, 30, 9, 0, tzinfo=AMS),
        ),
        (
            "counted",
            datetime(2026, 11, 30, 9, 0, tzinfo=AMS),
            datetime(2026, 11, 30, 16, 0, tzinfo=AMS),
        ),
    ]
    assert expl.counted == timedelta(hours=8, minutes=30)
    assert expl.state == "running" and expl.notes == []

    console = Console(record=True, width=200)
    console.print(render_explanation(expl))
    text = console.export_text()
    for needle in (
        "not-super-admin",
        "support-hours",
        "weekend",
        "Fri 27 Nov 16:00",
        "open 09:00-17:30",
        "8h30m",
    ):
        assert needle in text


def test_explain_a_clock_pinned_to_another_policy_says_so() -> None:
    outcome = open_clock(ticket(1), DEFAULT, "c")
    assert outcome is not None
    expl = explain_clock(outcome[0], new_policy())
    assert expl.policy_version == "2026-11-01" and expl.current_policy_version == "2026-12-01"
    assert len(expl.notes) == 1 and "recompute" in expl.notes[0]
    assert [s.label for s in expl.segments] == ["24/7"]
    assert expl.counted == 30 * M  # the clock's own deadline, not the new budget


# --- recompute ----------------------------------------------------------------------------


def test_recompute_moves_a_changed_clock_and_queues_sla_scheduled(store: ClockStore) -> None:
    critical = seed(store, ticket(1))  # 30 min -> 20 min under the new policy
    chat = seed(store, ticket(2, channel="chat", severity="standard"))  # unchanged rule
    policy = new_policy()
    before = len(outbox_events(store))
    now = START + 5 * M

    moved = recompute(store, policy, now=now)

    assert moved == [  # in ticket id order
        (chat.ticket_id, chat.due_at, chat.due_at),  # re-pinned only
        (critical.ticket_id, START + 30 * M, START + 20 * M),
    ]
    clock = stored(store, critical.ticket_id)
    assert clock.policy_version == "2026-12-01"
    assert (clock.due_at, clock.warn_at) == (START + 20 * M, START + 10 * M)
    assert clock.started_at == START and clock.correlation_id == critical.correlation_id
    saved = row(store, critical.ticket_id)
    assert saved.policy_version == "2026-12-01"
    assert utc(saved.next_fire_at) == START + 10 * M

    events = outbox_events(store)[before:]
    assert len(events) == 1  # only the clock that moved
    event = events[0]
    assert event.subject == critical.ticket_id and event.source == "/premium-support/sla_timer"
    assert event.routing_key == "sla.scheduled.business_critical"
    assert event.correlationid == critical.correlation_id
    data = event.parsed()
    assert isinstance(data, SlaScheduled)
    assert data.due_at == START + 20 * M and data.warn_at == START + 10 * M
    assert data.policy_version == "2026-12-01"

    assert stored(store, chat.ticket_id).policy_version == "2026-12-01"
    assert recompute(store, policy, now=now) == []  # nothing left on the old version
    assert len(outbox_events(store)) == before + 1


def test_recompute_leaves_stopped_breached_and_current_clocks_alone(store: ClockStore) -> None:
    met = seed(store, ticket(1))
    commit(store, respond(met, START + M))
    breached = seed(store, ticket(2))
    commit(store, fire_due(breached, START + 31 * M))
    current = seed(store, ticket(3), new_policy())
    policy = new_policy()
    rows = {t: row(store, t) for t in (met.ticket_id, breached.ticket_id, current.ticket_id)}
    events = len(outbox_events(store))

    assert recompute(store, policy, now=START + 40 * M) == []

    for t, before in rows.items():
        assert row(store, t) == before
    assert len(outbox_events(store)) == events


def test_recompute_one_ticket(store: ClockStore) -> None:
    one, other = seed(store, ticket(1)), seed(store, ticket(2))
    policy = new_policy()
    moved = recompute(store, policy, ticket_id=other.ticket_id, now=START)
    assert moved == [(other.ticket_id, START + 30 * M, START + 20 * M)]
    assert stored(store, one.ticket_id) == one
    assert stored(store, other.ticket_id).policy_version == "2026-12-01"
    assert recompute(store, policy, ticket_id=tid(99), now=START) == []


def test_recompute_never_resends_a_warning(store: ClockStore) -> None:
    clock = seed(store, ticket(1))  # warn at 20 min, due at 30 min
    warned = commit(store, fire_due(clock, START + 21 * M))
    assert warned.warned
    policy = new_policy(critical_budget="45m")  # warn at 35 min, due at 45 min
    assert recompute(store, policy, now=START + 22 * M) == [
        (clock.ticket_id, START + 30 * M, START + 45 * M)
    ]
    moved = stored(store, clock.ticket_id)
    assert moved.warned and moved.state == "running"
    assert utc(row(store, clock.ticket_id).next_fire_at) == START + 45 * M

    timer = SlaTimer(store, policy, clock=lambda: START + 46 * M)
    assert timer.fire() == 1
    types = [type(e.parsed()) for e in outbox_events(store)]
    assert types.count(SlaWarning) == 1  # the one sent before the recompute
    assert stored(store, clock.ticket_id).state == "breached"


def test_recompute_into_the_past_fires_at_the_next_tick(store: ClockStore) -> None:
    clock = seed(store, ticket(1))
    now = START + 25 * M  # past the new 20 min due, before the old 30 min
    recompute(store, new_policy(), now=now)
    assert utc(row(store, clock.ticket_id).next_fire_at) == START + 10 * M
    assert SlaTimer(store, new_policy(), clock=lambda: now).fire() == 1
    assert stored(store, clock.ticket_id).state == "breached"


def test_recompute_to_no_clock_stops_without_breach(store: ClockStore) -> None:
    chat = seed(store, ticket(1, channel="chat", severity="standard"))
    text = default_policy_text().replace('version: "2026-11-01"', 'version: "no-chat"')
    text = text.replace(
        "  - name: not-premium\n",
        "  - name: no-chat\n    match: {channel: chat}\n    clock: false\n  - name: not-premium\n",
    )
    policy = parse_policy(text)
    assert recompute(store, policy, now=START + M) == [(chat.ticket_id, chat.due_at, None)]
    clock = stored(store, chat.ticket_id)
    assert clock.state == "exempted" and clock.stopped_at == START + M
    assert row(store, chat.ticket_id).next_fire_at is None


def test_recompute_pages_through_the_store(store: ClockStore) -> None:
    ids = [seed(store, ticket(n)).ticket_id for n in range(7)]
    moved = recompute(store, new_policy(), now=START, page_size=2)
    assert [m.ticket_id for m in moved] == sorted(ids)
    assert all(m.new_due == START + 20 * M for m in moved)
    with store.engine.connect() as conn:
        versions = conn.execute(sa.select(clocks.c.policy_version).distinct()).scalars().all()
    assert versions == ["2026-12-01"]


def test_recompute_cause_is_deterministic(store: ClockStore) -> None:
    clock = seed(store, ticket(1))
    recompute(store, new_policy(), now=START)
    event = outbox_events(store)[-1]
    cause = f"recompute:2026-12-01:{(START + 20 * M).isoformat()}"
    assert event.id == event_id(clock.ticket_id, event.type, cause)
    assert json.loads(event.model_dump_json())["data"]["policy_rule"] == clock.rule
