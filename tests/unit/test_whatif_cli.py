"""`premium-support sla whatif --from-file` as an operator runs it (typer's runner): the
JSON document, the HTML report (self-contained, escaped), export, --since, and the
one-line errors."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from services.cli import app
from services.operator.whatif_cli import parse_since
from tests.conftest import ROOT
from tests.unit.test_whatif import ONCALL, POLICY, T0, A, B, opened, responded


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {
        "current": tmp_path / "policy-1h.yaml",
        "proposed": tmp_path / "p<img onerror=x>.yaml",  # a hostile file name
        "kim": tmp_path / "kim.yaml",
        "lars": tmp_path / "lars.yaml",
        "events": tmp_path / "events.jsonl",
    }
    out["current"].write_text(POLICY.format(version="v1", budget="1h"))
    out["proposed"].write_text(POLICY.format(version="v2", budget="30m"))
    out["kim"].write_text(ONCALL.format(primary="kim"))
    out["lars"].write_text(ONCALL.format(primary="lars"))
    events = [opened(A), responded(A, timedelta(minutes=40)), opened(B, T0 + timedelta(hours=3))]
    bad = events[0].model_copy(update={"id": "bad-data", "data": {"ticket": "?"}})
    lines = [e.model_dump_json() for e in [*events, bad]]
    out["events"].write_text("\n".join([*lines, "not json", ""]))
    return out


def whatif(files: dict[str, Path], *args: str, **env: str) -> Result:
    base = {"POLICY_FILE": str(files["current"]), "ONCALL_FILE": str(files["kim"])}
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("AMQP_")}
    return CliRunner().invoke(app, ["sla", "whatif", *args], env=unset | base | env)


def document(result: Result) -> dict[str, Any]:
    assert result.exit_code == 0, result.output
    doc: dict[str, Any] = json.loads(result.stdout)
    return doc


def test_json_has_both_sides_per_metric_the_changes_and_pages_per_person(
    files: dict[str, Path],
) -> None:
    args = ["--from-file", str(files["events"]), "--policy", str(files["proposed"])]
    doc = document(whatif(files, *args, "--oncall", str(files["lars"]), "--json"))
    counts = doc["metrics"]["first_response"]
    assert counts["breaches"] == {"current": 0, "proposed": 1}
    # opened A and B page level 1; A's breach pages levels 1 and 2
    assert counts["pages"] == {"current": 2, "proposed": 4}
    assert [c["change"] for c in doc["changed"]] == ["met -> responded_late"]
    day = T0.date().isoformat()
    assert doc["pages_per_person_per_day"] == {
        "kim": {day: {"current": 2, "proposed": 0}},
        "lars": {day: {"current": 0, "proposed": 3}},
        "mira": {day: {"current": 0, "proposed": 1}},
    }
    assert doc["window"] | {"source": None} == {
        "source": None,
        "events": 4,  # envelopes read, the one with unusable data among them
        "first": T0.isoformat(),
        "last": (T0 + timedelta(hours=3)).isoformat(),
        "until": (T0 + timedelta(hours=3)).isoformat(),
        "tickets_without_clock": {"current": 0, "proposed": 0},
        "updates_of_tickets_opened_before": 0,
        "unreadable": 2,  # the line that is no JSON, the opened without a ticket
    }
    assert doc["files"]["proposed"]["oncall"] == str(files["lars"])


def test_without_proposed_files_both_sides_are_the_same(files: dict[str, Path]) -> None:
    doc = document(whatif(files, "--from-file", str(files["events"]), "--json"))
    assert doc["changed"] == []
    assert all(c["current"] == c["proposed"] for c in doc["metrics"]["first_response"].values())


def test_the_html_report_is_self_contained_and_escaped(
    files: dict[str, Path], tmp_path: Path
) -> None:
    report = tmp_path / "report.html"
    args = ["--from-file", str(files["events"]), "--policy", str(files["proposed"])]
    result = whatif(files, *args, "--html", str(report))
    assert result.exit_code == 0, result.output
    page = report.read_text()
    assert page.count("<svg") == 2 and "<polyline" in page
    assert "<img" not in page and "<script" not in page and "&lt;img onerror=x&gt;" in page
    assert not re.search(r"(src|href)=", page)  # nothing loaded from anywhere
    assert "met" in page and A in page
    assert "first_response" in result.stdout and "responded_late" in result.stdout


def test_export_writes_what_was_read_and_since_filters_by_event_time(
    files: dict[str, Path], tmp_path: Path
) -> None:
    copy = tmp_path / "copy.jsonl"
    since = (T0 + timedelta(hours=1)).isoformat()
    args = ["--from-file", str(files["events"]), "--export", str(copy), "--since", since]
    doc = document(whatif(files, *args, "--json"))
    assert doc["window"]["events"] == 1  # only B's opened is at or after the start
    [line] = copy.read_text().splitlines()
    assert json.loads(line)["subject"] == B
    again = document(whatif(files, "--from-file", str(copy), "--json"))
    assert again["metrics"] == doc["metrics"]


def test_parse_since() -> None:
    now = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
    assert parse_since("7d", now) == now - timedelta(days=7)
    assert parse_since("12h", now) == now - timedelta(hours=12)
    assert parse_since("2026-11-30T09:00:00+00:00", now) == datetime(2026, 11, 30, 9, tzinfo=UTC)


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--since", "last week"], {}, "write e.g. 7d"),
        ([], {"ONCALL_FILE": ""}, "ONCALL_FILE is not set"),
        ([], {"AMQP_URL": "memory://"}, "keeps no stream: use --from-file"),
        (["--policy", "/nonexistent/policy.yaml"], {}, "/nonexistent/policy.yaml"),
    ],
)
def test_a_wrong_setting_is_one_line_without_a_traceback(
    files: dict[str, Path], args: list[str], env: dict[str, str], says: str
) -> None:
    if "AMQP_URL" not in env and "--since" not in args:
        args = [*args, "--from-file", str(files["events"])]
    result = whatif(files, *args, **env)
    assert result.exit_code == 2, result.output
    assert says in result.output and "Traceback" not in result.output


RECORDING = ROOT / "tests/fixtures/whatif-stream.jsonl"  # by tests/integration/test_whatif.py
FAST = ROOT / "tests/fixtures/policy-fast.yaml"  # the files that run used
DEMO_ONCALL = ROOT / "examples/demo/oncall.yaml"


def standard_in_5s(fast_policy: str) -> str:
    """policy-fast.yaml with the standard Super Admin email's 20 s budget cut to 5 s."""
    text = fast_policy.replace("budget: 20s", "budget: 5s")
    return text.replace("warn: {before: 5s}", "warn: {before: 2s}")


def test_a_recorded_run_replays_as_the_services_ran_it(tmp_path: Path) -> None:
    """The stream of a real run (intake, sla_timer, notifier): under the files it ran with,
    the replay finds the warnings, breaches, met clocks and pages the services produced."""
    recorded = [json.loads(line) for line in RECORDING.read_text().splitlines()]
    types = Counter(e["type"] for e in recorded)
    paged = Counter(
        (e["data"]["person"], e["time"][:10])
        for e in recorded
        if e["type"] == "support.escalation.sent" and e["data"]["reason"] != "warning"
    )  # the warning's is a reminder, not a page
    proposed = tmp_path / "policy.yaml"
    proposed.write_text(standard_in_5s(FAST.read_text()))
    env = {"POLICY_FILE": str(FAST), "ONCALL_FILE": str(DEMO_ONCALL)}
    args = ["--from-file", str(RECORDING), "--policy", str(proposed), "--json"]
    result = CliRunner().invoke(app, ["sla", "whatif", *args], env=env)
    doc = document(result)

    counts = doc["metrics"]["first_response"]
    assert counts["warnings"]["current"] == types["support.sla.warning"] == 1
    assert counts["breaches"]["current"] == types["support.sla.breached"] == 1
    assert counts["met"]["current"] == types["support.sla.met"] == 1
    assert counts["pages"]["current"] == sum(paged.values()) == 4
    assert {
        (person, day): cell["current"]
        for person, days in doc["pages_per_person_per_day"].items()
        for day, cell in days.items()
    } == dict(paged)
    # the standard email was answered after about 6.5 s: in time for 20 s, not for 5 s
    [changed] = doc["changed"]
    assert changed["change"] == "met -> responded_late"
    assert counts["breaches"]["proposed"] == 2
