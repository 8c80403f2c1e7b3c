"""`premium-support sla explain|recompute` run as a person runs them, against a SQLite
store in tmp_path filled through the store API (no broker)."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from schemas.events import CloudEvent, SlaScheduled
from schemas.inbound import Severity
from schemas.ticket import Submitter, SubmitterRole, Ticket
from services.sla_timer.clock import Clock, open_clock
from services.sla_timer.policy import default_policy_text, load_policy
from services.sla_timer.service import SlaTimer
from services.sla_timer.store import ClockStore, engine_for, outbox
from tests.conftest import ROOT

AMS = ZoneInfo("Europe/Amsterdam")
CREATED = datetime(2026, 11, 27, 16, 0, tzinfo=AMS)  # Friday 16:00
USER = "T-email-00000000000000a1"  # not a Super Admin: one business day
CRITICAL = "T-email-00000000000000b2"  # Super Admin, business-critical: 30 min
OTHER = "T-email-00000000000000c3"  # Super Admin, business-critical: 30 min


def ticket(ticket_id: str, role: SubmitterRole, severity: Severity) -> Ticket:
    return Ticket(
        ticket_id=ticket_id,
        channel="email",
        portal_id=4411,
        premium=True,
        submitter=Submitter(role=role),
        severity=severity,
        submitter_marked_critical=False,
        created_at=CREATED,
    )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "clocks.db"
    store = ClockStore(engine_for(str(path)))
    store.migrate()
    policy = load_policy(None)
    timer = SlaTimer(store, policy)
    for t in (
        ticket(USER, "user", "standard"),
        ticket(CRITICAL, "super_admin", "business_critical"),
        ticket(OTHER, "super_admin", "business_critical"),
    ):
        outcome = open_clock(t, policy, "corr-1")
        assert outcome is not None
        with store.transaction() as conn:
            timer.commit(conn, outcome, CREATED)
    store.engine.dispose()
    return path


@pytest.fixture
def new_policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.yaml"
    text = default_policy_text().replace('version: "2026-11-01"', 'version: "2026-12-01"')
    path.write_text(text.replace("budget: 30m", "budget: 20m"))
    return path


def sla(db: Path | str, *args: str, policy: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("POLICY_FILE", "SLA_STORE_URL")}
    env |= {"SLA_STORE_URL": str(db), "COLUMNS": "200"}
    if policy is not None:
        env["POLICY_FILE"] = str(policy)
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "sla", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def clock(db: Path, ticket_id: str) -> Clock:
    store = ClockStore(engine_for(str(db)))
    data = store.get(ticket_id)
    store.engine.dispose()
    assert data is not None
    return Clock.model_validate(data)


def scheduled(db: Path) -> list[SlaScheduled]:
    engine = engine_for(str(db))
    with engine.connect() as conn:
        bodies = conn.execute(sa.select(outbox.c.body).order_by(outbox.c.id)).scalars().all()
    engine.dispose()
    events = [CloudEvent.model_validate_json(body).parsed() for body in bodies]
    return [e for e in events if isinstance(e, SlaScheduled)]


def test_explain(db: Path) -> None:
    result = sla(db, "explain", USER)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"SLA clock {USER}" in out
    for needle in (
        "not-super-admin (target)",
        "version 2026-11-01",
        "support-hours (Europe/Amsterdam)",
        "Fri 2026-11-27 16:00:00 CET",  # started, local
        "Mon 2026-11-30 16:00:00 CET",  # due, local: the weekend is skipped
        "Mon 2026-11-30 15:00:00 UTC",  # due, UTC
        "weekend",
        "8h30m of business time",
    ):
        assert needle in out, needle


def test_explain_unknown_ticket_fails_clearly(db: Path) -> None:
    result = sla(db, "explain", "T-email-00000000000000ff")
    assert result.returncode == 1
    assert "no SLA clock for ticket T-email-00000000000000ff" in result.stderr


def test_recompute_one_ticket_then_all(db: Path, new_policy: Path) -> None:
    before = len(scheduled(db))

    one = sla(db, "recompute", "--ticket", CRITICAL, policy=new_policy)
    assert one.returncode == 0, one.stderr
    assert f"{CRITICAL}: 2026-11-27 15:30:00Z -> 2026-11-27 15:20:00Z" in one.stdout
    assert OTHER not in one.stdout
    assert "scheduler" in one.stdout and "outbox" in one.stdout
    assert clock(db, CRITICAL).policy_version == "2026-12-01"
    assert clock(db, OTHER).policy_version == "2026-11-01"

    rest = sla(db, "recompute", policy=new_policy)
    assert rest.returncode == 0, rest.stderr
    assert f"{OTHER}: 2026-11-27 15:30:00Z -> 2026-11-27 15:20:00Z" in rest.stdout
    assert CRITICAL not in rest.stdout  # already migrated
    assert "1 deadline(s) moved, 1 clock(s) re-pinned" in rest.stdout  # USER: same rule
    assert {clock(db, t).policy_version for t in (USER, CRITICAL, OTHER)} == {"2026-12-01"}

    queued = scheduled(db)[before:]
    assert [(e.ticket_id, e.due_at.isoformat()) for e in queued] == [
        (CRITICAL, "2026-11-27T15:20:00+00:00"),
        (OTHER, "2026-11-27T15:20:00+00:00"),
    ]
    assert sla(db, "recompute", policy=new_policy).stdout.startswith("0 deadline(s) moved")


def test_recompute_unknown_ticket_fails(db: Path, new_policy: Path) -> None:
    result = sla(db, "recompute", "--ticket", "T-email-00000000000000ff", policy=new_policy)
    assert result.returncode == 1
    assert "no SLA clock" in result.stderr


def test_explain_with_a_mistyped_path_says_so_and_creates_nothing(tmp_path: Path) -> None:
    mistyped = tmp_path / "clcoks.db"
    for command in (("explain", USER), ("recompute",)):
        result = sla(mistyped, *command)
        assert result.returncode == 1
        [line] = result.stderr.strip().splitlines()
        assert line == f"error: no SLA store at {mistyped}: the file does not exist (SLA_STORE_URL)"
    assert list(tmp_path.iterdir()) == []  # no empty database, no -wal or -shm file


def test_explain_takes_a_sqlite_url_and_opens_it_read_only(db: Path) -> None:
    before = db.stat().st_mtime_ns
    result = sla(f"sqlite:///{db}", "explain", USER)
    assert result.returncode == 0, result.stderr
    assert f"SLA clock {USER}" in result.stdout
    assert db.stat().st_mtime_ns == before  # nothing migrated, nothing written
