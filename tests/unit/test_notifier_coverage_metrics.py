"""The coverage gauges the `OncallCoverageGap*` alert rules read: set by the notifier
worker's real coverage check, exported in the Prometheus text format."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.notifier.delivery import Deliverer
from services.notifier.digest import DigestQueue
from services.notifier.ledger import Ledger
from services.notifier.main import NotifierSettings
from services.notifier.metrics import NotifierMetrics
from services.notifier.oncall import load_oncall
from services.notifier.worker import NotifierWorker
from services.sla_timer.store import engine_for

NOW = datetime(2026, 11, 27, 10, tzinfo=UTC)  # a Friday
MONDAY_9 = datetime(2026, 11, 30, 9, tzinfo=UTC)


def worker(
    tmp_path: Path, start: str, end: str | None = None
) -> tuple[NotifierWorker, NotifierMetrics]:
    """A worker over a one-person level-1 rotation from `start` (a Monday, 09:00 UTC) to
    `end`; gaps are posted to a console team channel (stdout), no network."""
    until = f", end: {end}" if end else ""
    path = tmp_path / "oncall.yaml"
    path.write_text(
        f"""
version: test
people:
  - {{id: kim, name: Kim, email: kim@support.example}}
  - {{id: mira, name: Mira, email: mira@support.example}}
schedules:
  primary: {{timezone: UTC, rotation: [kim], handoff: {{weekday: mon, hour: 9}},
             start: {start}{until}}}
escalation:
  - {{level: 1, schedules: [primary]}}
  - {{level: 2, people: [mira]}}
team_channel: {{console: true}}
"""
    )
    ledger = Ledger(engine_for(str(tmp_path / "notifier.db")))
    ledger.migrate()
    metrics = NotifierMetrics()
    settings = NotifierSettings(ONCALL_FILE=path)
    deliverer = Deliverer(load_oncall(path), None)
    return NotifierWorker(DigestQueue(ledger.engine), deliverer, settings, metrics=metrics), metrics


def scrape(metrics: NotifierMetrics) -> dict[str, float]:
    text = generate_latest(metrics.registry).decode()
    return {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("oncall_coverage_")
    }


def test_nothing_is_exported_before_the_first_check(tmp_path: Path) -> None:
    _worker, metrics = worker(tmp_path, "2026-11-02")
    assert scrape(metrics) == {}


def test_a_gap_now_is_exported_as_its_start_and_end(tmp_path: Path) -> None:
    work, metrics = worker(tmp_path, "2026-11-30")  # nobody before Monday 09:00
    assert work.check_coverage(NOW) == [(NOW, MONDAY_9)]
    assert scrape(metrics) == {
        "oncall_coverage_gaps": 1.0,
        "oncall_coverage_next_gap_start_timestamp_seconds": NOW.timestamp(),
        "oncall_coverage_next_gap_end_timestamp_seconds": MONDAY_9.timestamp(),
        "oncall_coverage_last_check_timestamp_seconds": NOW.timestamp(),
    }


def test_a_later_check_moves_on_and_full_coverage_is_infinity(tmp_path: Path) -> None:
    work, metrics = worker(tmp_path, "2026-11-30")
    work.check_coverage(NOW)
    later = MONDAY_9 + timedelta(hours=1)  # the rotation has begun: covered from now on
    assert work.check_coverage(later) == []
    samples = scrape(metrics)
    assert samples["oncall_coverage_gaps"] == 0.0
    assert math.isinf(samples["oncall_coverage_next_gap_start_timestamp_seconds"])
    assert math.isinf(samples["oncall_coverage_next_gap_end_timestamp_seconds"])
    assert samples["oncall_coverage_last_check_timestamp_seconds"] == later.timestamp()


def test_a_gap_ahead_starts_in_the_future(tmp_path: Path) -> None:
    work, metrics = worker(tmp_path, "2026-11-23", end="2026-11-30")  # Kim's last week
    gaps = work.check_coverage(NOW)
    assert gaps == [(MONDAY_9, NOW + timedelta(days=7))]
    samples = scrape(metrics)
    assert samples["oncall_coverage_next_gap_start_timestamp_seconds"] == MONDAY_9.timestamp()
    assert samples["oncall_coverage_next_gap_end_timestamp_seconds"] == gaps[0][1].timestamp()
