"""`sla whatif` on the real broker: a small real run (intake, sla_timer and notifier on the
test's prefix, fed with pika) is recorded by the support.events.log stream; the CLI reads
it back, replays it under the current and proposed files and prints numbers that match
what the services did; it publishes nothing and opens no store.

`WHATIF_RECORD=tests/fixtures/whatif-stream.jsonl` also keeps the export of the run: that
is how the fixture the unit tests replay was made.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pika
import pytest

from schemas.events import CloudEvent
from services.intake.ids import ticket_id
from services.intake.main import IntakeSettings
from services.notifier.main import NotifierSettings
from services.notifier.main import bootstrap as notifier_bootstrap
from services.runtime.names import SERVICE_BINDINGS, Names
from services.sla_timer.main import SlaSettings
from services.sla_timer.main import bootstrap as sla_bootstrap
from services.upstream import UpstreamPublisher, pika_parameters
from tests.conftest import ROOT
from tests.integration.conftest import RunningService, start_all, wait_for
from tests.integration.test_cli import cli
from tests.integration.test_sla_timer import FAST, email
from tests.support.capture import Capture
from tests.unit.test_whatif_cli import DEMO_ONCALL, standard_in_5s

A_MID, B_MID = "<whatif-a@mail.acme.example>", "<whatif-b@mail.acme.example>"
A, B = ticket_id("email", A_MID), ticket_id("email", B_MID)


@pytest.fixture
def recorded_run(
    settings: IntakeSettings, events: Capture, intake: RunningService, tmp_path: Path
) -> Iterator[list[CloudEvent]]:
    """A critical email left unanswered (warned, breached, paged) and a standard one
    answered in time, through the three services; returns what support.events carried."""
    common = {"AMQP_URL": settings.amqp_url, "AMQP_PREFIX": settings.amqp_prefix}
    sla = SlaSettings(
        **common, SLA_STORE_URL=str(tmp_path / "run-clocks.db"), POLICY_FILE=FAST, SLA_TICK_S=0.1
    )
    notifier = NotifierSettings(
        **common, ONCALL_FILE=DEMO_ONCALL, NOTIFIER_STORE_URL=str(tmp_path / "run-notifier.db")
    )
    services = start_all([(sla_bootstrap(sla), sla), (notifier_bootstrap(notifier), notifier)])
    try:
        created = datetime.now(UTC)
        with UpstreamPublisher(settings.amqp_url, settings.amqp_prefix) as upstream:
            upstream.publish("email", email(created, critical=True, mid=A_MID))
            upstream.publish("email", email(created, critical=False, mid=B_MID))
            time.sleep(6.5)  # A (3 s) breaches; B (20 s) is answered after 6.5 s
            answer = {"type": "first_response", "ticket_id": B, "agent": "sam"}
            answered = answer | {"at": datetime.now(UTC).isoformat()}
            upstream.publish("helpdesk", json.dumps(answered).encode())
        wait_for(lambda: "sla.met.standard" in keys(events), timeout=15)
        time.sleep(1.0)  # the pages' escalation.sent
    finally:
        for service in services:
            service.stop()
    events.take(0, timeout=0, settle=0.5)
    yield [CloudEvent.model_validate(r.json()) for r in events.received]


def keys(events: Capture) -> list[str]:
    return [r.routing_key for r in events.drain()]


def depths(amqp_url: str, prefix: str, capture: Capture) -> dict[str, int]:
    """Every queue's depth, the test's capture of support.events (`#`) among them. (A
    stream's reported count lags its appends, so the stream itself is not compared.)"""
    names = Names(prefix)
    queues = [*names.service_queues(), *(names.dead_letter_queue(s) for s in SERVICE_BINDINGS)]
    conn = pika.BlockingConnection(pika_parameters(amqp_url))
    try:
        ch = conn.channel()
        queues.append(capture.queue)
        return {q: ch.queue_declare(q, passive=True).method.message_count for q in queues}
    finally:
        conn.close()


def proposed_files(tmp_path: Path) -> tuple[Path, Path]:
    """B's budget 20 s -> 5 s; levels 1 and 2 of the roster swapped (lars first)."""
    policy = tmp_path / "proposed-policy.yaml"
    policy.write_text(standard_in_5s(FAST.read_text()))
    oncall = tmp_path / "proposed-oncall.yaml"
    text = DEMO_ONCALL.read_text()
    swapped = text.replace("rotation: [oncall-kim]", "rotation: [SWAP]")
    swapped = swapped.replace("rotation: [oncall-lars]", "rotation: [oncall-kim]")
    oncall.write_text(swapped.replace("rotation: [SWAP]", "rotation: [oncall-lars]"))
    return policy, oncall


def test_whatif_reads_the_stream_of_a_real_run_and_changes_nothing(
    recorded_run: list[CloudEvent], events: Capture, amqp_url: str, prefix: str, tmp_path: Path
) -> None:
    recorded = [e.type for e in recorded_run]
    assert recorded.count("support.sla.breached") == 1  # A's, by the real sla_timer
    assert recorded.count("support.sla.met") == 1  # B's
    policy, oncall = proposed_files(tmp_path)
    export = tmp_path / "export.jsonl"
    stores = {"SLA_STORE_URL": "must-not-exist.db", "NOTIFIER_STORE_URL": "nor-this.db"}
    files = {"POLICY_FILE": str(FAST), "ONCALL_FILE": str(DEMO_ONCALL)}
    env = {"AMQP_URL": amqp_url, "AMQP_PREFIX": prefix} | files
    env |= {name: str(tmp_path / path) for name, path in stores.items()}
    before = depths(amqp_url, prefix, events)
    args = ["--policy", str(policy), "--oncall", str(oncall), "--export", str(export)]
    result = cli("sla", "whatif", *args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    doc: dict[str, Any] = json.loads(result.stdout)

    assert depths(amqp_url, prefix, events) == before  # nothing published
    assert not any((tmp_path / path).exists() for path in stores.values())
    exported = [CloudEvent.model_validate_json(line) for line in export.read_text().splitlines()]
    assert {e.id for e in exported} == {e.id for e in recorded_run}

    counts = doc["metrics"]["first_response"]
    # The current side replays what the services did: the same warnings, breaches, met.
    assert counts["tickets"] == {"current": 2, "proposed": 2}
    assert counts["warnings"]["current"] == recorded.count("support.sla.warning") == 1
    assert counts["breaches"] == {"current": 1, "proposed": 2}
    assert counts["met"] == {"current": 1, "proposed": 0}
    assert [(c["ticket_id"], c["change"]) for c in doc["changed"]] == [(B, "met -> responded_late")]
    # A paged kim when opened; its breach paged levels 1 and 2: kim, lars, mira
    day = recorded_run[0].time.date().isoformat()
    assert doc["pages_per_person_per_day"] == {
        "oncall-kim": {day: {"current": 2, "proposed": 1}},
        "oncall-lars": {day: {"current": 1, "proposed": 2}},
        "oncall-mira": {day: {"current": 1, "proposed": 1}},
    }
    # --since: a timestamp offset; nothing was recorded after this one
    args = ["--since", "2100-01-01T00:00:00+00:00", "--json"]
    later = json.loads(cli("sla", "whatif", *args, env=env).stdout)
    assert later["window"]["events"] == 0 and later["metrics"] == {}
    if os.environ.get("WHATIF_RECORD"):
        shutil.copy(export, ROOT / os.environ["WHATIF_RECORD"])


def test_a_prefix_without_a_stream_is_one_line(prefix: str, amqp_url: str) -> None:
    env = {"AMQP_URL": amqp_url, "AMQP_PREFIX": prefix, "ONCALL_FILE": str(DEMO_ONCALL)}
    result = cli("sla", "whatif", env=env)
    assert result.returncode == 1, result.stdout
    assert f"no stream {prefix}support.events.log" in result.stderr
    assert "Traceback" not in result.stderr
