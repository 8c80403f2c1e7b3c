"""A paused clock in both real stores (SQLite file, PostgreSQL schema): its pauses are
kept with the clock (in its JSON, so an existing database needs no new column), the
scheduler does not claim it while paused, and it breaches at the moved deadline after
resuming. Default policy: email/super_admin/business_critical is due 30 min after the
start on a 24/7 calendar, warning at 20 min."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest

from schemas.events import CloudEvent, SlaBreached
from services.sla_timer.clock import Clock, pause, resume
from services.sla_timer.policy import load_policy
from services.sla_timer.service import SlaTimer
from services.sla_timer.store import ClockStore, engine_for
from tests.unit.test_sla_clock import START, TID, opened

POLICY = load_policy(None)


def at(minutes: int) -> datetime:
    return START + timedelta(minutes=minutes)


@pytest.fixture
def store(store_url: str) -> Iterator[ClockStore]:
    store = ClockStore(engine_for(store_url))
    store.migrate()
    yield store
    store.engine.dispose()


def stored(store: ClockStore) -> Clock:
    with store.transaction() as conn:
        data = store.load(conn, TID)
    assert data is not None
    return Clock.model_validate(data)


def test_a_paused_clock_is_stored_with_its_pause_and_fires_only_after_resuming(
    store: ClockStore,
) -> None:
    now = [at(10)]
    timer = SlaTimer(store, POLICY, clock=lambda: now[0])
    paused = pause(opened(POLICY), at(10))
    with store.transaction() as conn:
        timer.commit(conn, paused, at(10))
    assert stored(store) == paused[0] and stored(store).paused

    now[0] = at(60)  # long past the unpaused due (30): still nothing while paused
    assert timer.fire() == 0

    # Resumed at 25: 15 min given back, warning 35, due 45.
    resumed = resume(paused[0], POLICY.calendars[paused[0].calendar], at(25))
    with store.transaction() as conn:
        timer.commit(conn, resumed, at(25))
    assert (stored(store).due_at, stored(store).pauses) == (at(45), resumed[0].pauses)
    assert store.next_due() == at(35)
    now[0] = at(46)
    assert timer.fire() == 1
    sent = [CloudEvent.model_validate_json(row.body).parsed() for row in store.unsent(10)]
    breaches = [data for data in sent if isinstance(data, SlaBreached)]
    assert [b.due_at for b in breaches] == [at(45)]
