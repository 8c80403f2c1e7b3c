"""Team notices grouped into digests, and the hourly coverage check, against real servers."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from schemas.events import CloudEvent, SlaBreached, make_event
from services.intake.main import IntakeSettings
from services.notifier.channels import RetryPolicy
from services.notifier.delivery import Deliverer
from services.notifier.digest import DigestQueue
from services.notifier.ledger import Ledger
from services.notifier.main import NotifierSettings
from services.notifier.oncall import load_oncall
from services.notifier.worker import NotifierWorker
from services.sla_timer.store import engine_for
from tests.integration.test_notifier import publish, run_notifier
from tests.integration.test_notifier_channels import (  # noqa: F401 - fixtures
    Serve,
    Server,
    always,
    serve,
)
from tests.support.capture import Capture

NOW = datetime.now(UTC).replace(microsecond=0)
INTERVAL_S = 2.0


def oncall_file(tmp_path: Path, team: Server, start: str, interval: str = "2s") -> Path:
    text = f"""
people:
  - {{id: kim, name: Kim, email: kim@support.example}}
schedules:
  primary: {{timezone: UTC, rotation: [kim], handoff: {{weekday: mon, hour: 9}}, start: {start}}}
escalation:
  - {{level: 1, schedules: [primary]}}
  - {{level: 2, people: [kim]}}
team_channel: {{name: team, chat_webhook: "{team.url}", timezone: UTC}}
digest_interval: {interval}
"""
    path = tmp_path / "oncall.yaml"
    path.write_text(text)
    return path


def missed_target(n: int) -> CloudEvent:
    tid = f"T-chat-{n:016x}"
    data = SlaBreached(
        ticket_id=tid,
        severity="standard",
        guaranteed=False,
        policy_rule="chat",
        policy_version="test",
        started_at=NOW - timedelta(minutes=6),
        due_at=NOW - timedelta(minutes=1),
        fired_at=NOW,
        lateness_ms=0,
    )
    return make_event(
        data, service="sla_timer", subject=tid, cause="breach", correlation_id=f"c-{n}", now=NOW
    )


def entries(server: Server) -> list[str]:
    """The ticket ids named in every digest the team channel received, in order."""
    return [
        line.split(": ", 1)[1].split(" ", 1)[0]
        for r in server.requests
        for line in r.json()["text"].splitlines()[1:]
        if line.startswith("- ")
    ]


def test_a_burst_of_missed_targets_becomes_at_most_two_digests(
    settings: IntakeSettings,
    events: Capture,
    tmp_path: Path,
    serve: Serve,  # noqa: F811 - the fixture imported above
) -> None:
    team = serve(always(200))
    monday = (NOW - timedelta(days=NOW.weekday() + 7)).date()
    notifier = NotifierSettings(
        AMQP_URL=settings.amqp_url,
        AMQP_PREFIX=settings.amqp_prefix,
        ONCALL_FILE=oncall_file(tmp_path, team, str(monday)),
        NOTIFIER_STORE_URL=str(tmp_path / "notifier.db"),
    )
    burst = [missed_target(n) for n in range(6)]
    arrivals: list[float] = []
    service = run_notifier(notifier)
    try:
        for event in burst:
            publish(settings.amqp_url, settings.amqp_prefix, event)
        deadline = time.monotonic() + 15
        while len(entries(team)) < len(burst) and time.monotonic() < deadline:
            if len(team.requests) > len(arrivals):
                arrivals.append(time.monotonic())
            time.sleep(0.02)
        arrivals += [time.monotonic()] * (len(team.requests) - len(arrivals))
        publish(settings.amqp_url, settings.amqp_prefix, burst[0], times=2)  # redelivered
        time.sleep(INTERVAL_S + 1.5)  # a duplicate digest would have gone out by now
    finally:
        service.stop()

    assert sorted(entries(team)) == sorted(e.subject for e in burst)  # each once
    assert 1 <= len(team.requests) <= 2, [r.json()["text"] for r in team.requests]
    if len(arrivals) == 2:
        assert arrivals[1] - arrivals[0] >= INTERVAL_S - 0.1
    sent = [e.json() for e in events.take(len(burst), settle=0.5)]
    ids = {
        (e["data"]["notification_key"], e["id"])
        for e in sent
        if e["type"] == "support.escalation.sent"
    }
    keys = Counter(key for key, _ in ids)
    assert set(keys) == {f"{e.subject}:missed:0:team:team_digest" for e in burst}
    # One escalation.sent per key: the redelivered notice re-emits the same event id.
    assert set(keys.values()) == {1}


def worker_for(
    tmp_path: Path, team: Server, start: str, clock: Callable[[], datetime]
) -> NotifierWorker:
    oncall = load_oncall(oncall_file(tmp_path, team, start, interval="5m"))
    ledger = Ledger(engine_for(str(tmp_path / "notifier.db")))
    ledger.migrate()
    retry = RetryPolicy(attempts=1, initial_s=0.01, max_s=0.01)
    settings = NotifierSettings(ONCALL_FILE=tmp_path / "oncall.yaml")
    return NotifierWorker(
        DigestQueue(ledger.engine), Deliverer(oncall, None, retry), settings, clock
    )


def test_coverage_gaps_are_posted_to_the_team_at_start_and_every_hour(
    tmp_path: Path,
    serve: Serve,  # noqa: F811
) -> None:
    team = serve(always(200))
    now = [datetime(2026, 11, 27, 10, tzinfo=UTC)]
    # The rotation starts on Monday 30 Nov at 09:00 UTC: nobody before that.
    worker = worker_for(tmp_path, team, "2026-11-30", lambda: now[0])

    worker.turn()  # at start
    assert len(team.requests) == 1
    text = team.requests[0].json()["text"]
    assert "Nobody on call at level 1 in 1 span ahead" in text
    assert "Fri 27 Nov 10:00 to Mon 30 Nov 09:00 UTC" in text

    now[0] += timedelta(minutes=59)
    worker.turn()
    assert len(team.requests) == 1  # not before the hour is up
    now[0] += timedelta(minutes=2)
    worker.turn()
    assert len(team.requests) == 2
    assert "Fri 27 Nov 11:01 to Mon 30 Nov 09:00 UTC" in team.requests[1].json()["text"]


def test_no_post_when_level_one_is_covered(tmp_path: Path, serve: Serve) -> None:  # noqa: F811
    team = serve(always(200))
    worker = worker_for(tmp_path, team, "2026-11-02", lambda: datetime(2026, 11, 27, tzinfo=UTC))
    worker.turn()
    assert team.requests == []
