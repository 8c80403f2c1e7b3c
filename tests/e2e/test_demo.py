"""`premium-support demo`: the three services in one process on memory://, no broker.

The default scenario runs once, as a person runs it (the CLI in a subprocess, with
AMQP_URL pointing nowhere to show it needs no broker); own scenarios run in-process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from services.demo import load_scenario, run_demo
from tests.conftest import ROOT

OUTAGE = ROOT / "examples" / "demo" / "outage-email.json"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"AMQP_URL": "amqp://nobody@127.0.0.1:1//", "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=150,
    )


def summary_rows(output: str) -> dict[str, str]:
    """Expected-outcome label -> its mark (✓ or ✗), from the summary at the end."""
    summary = output[output.index("Summary after") :]
    rows = {}
    for line in summary.splitlines():
        mark = line.strip()[:1]
        if mark in ("✓", "✗"):
            label = line.strip()[1:].rsplit("t+", 1)[0].replace("did not happen", "").strip()
            rows[label] = mark
    return rows


def test_the_default_demo_breaches_pages_both_levels_and_meets_an_sla() -> None:
    result = cli()

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    rows = summary_rows(out)
    for label in (
        "guaranteed 30 min breached",
        "page to level 1 on breach",
        "page to level 2 on breach",
        "page acknowledged by on-call",
        "first response in time (SLA met)",
    ):
        assert rows.get(label) == "✓", (label, rows)
    assert "All 11 expected outcomes happened." in out
    # What the summary claims, the events show: one line per event as it came.
    assert "SLA BREACHED: outage" in out
    assert "escalation sent: breached -> level 2 oncall-mira via console" in out
    assert "escalation sent: breached -> level 2 oncall-lars via console" in out
    assert "acknowledged: outage" in out
    assert "SLA met: invoice" in out
    assert "dead letter in intake (broken): invalid_json" in out
    # The on-call people's console channel printed the pages themselves.
    assert "[notify -> Mira Okafor (support manager) via console, level 2]" in out


def write_scenario(tmp_path: Path, expect: str, timeout: str = "20s") -> Path:
    path = tmp_path / "mine.yaml"
    path.write_text(
        f"""
title: one late email
timeout: {timeout}
steps:
  - id: late
    channel: email
    file: {OUTAGE}
    created: -29m57s      # breaches about 3 s after it is published
expect:
{expect}
""",
        encoding="utf-8",
    )
    return path


def test_an_own_scenario_plays_until_its_outcomes_happened(tmp_path: Path) -> None:
    path = write_scenario(
        tmp_path,
        "  - {event: sla.breached, step: late}\n"
        "  - {event: escalation.sent, step: late, reason: breached, level: 2, person: oncall-mira}",
    )
    console = Console(record=True, width=120)

    code = run_demo(console, load_scenario(path))

    text = console.export_text()
    assert code == 0, text
    assert "All 2 expected outcomes happened." in text
    assert "escalation sent: breached -> level 2 oncall-mira" in text


def test_an_outcome_that_does_not_happen_fails_the_demo(tmp_path: Path) -> None:
    # Nobody answers the ticket, so its SLA is never met.
    path = write_scenario(tmp_path, "  - {event: sla.met, step: late, label: answered}", "2s")
    console = Console(record=True, width=120)

    code = run_demo(console, load_scenario(path))

    text = console.export_text()
    assert code == 1, text
    assert "1 expected outcome(s) did not happen within 2s: answered" in text
    assert summary_rows(text) == {"answered": "✗"}


def test_a_malformed_scenario_is_refused_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        "steps:\n"
        "  - id: a\n"
        "    channel: fax\n"
        "    body: {}\n"
        "expect:\n"
        "  - {event: sla.breach, step: a}\n",
        encoding="utf-8",
    )

    result = cli("--scenario", str(path))

    assert result.returncode == 2
    assert f"{path}, line 3: steps[0].channel: Input should be" in result.stderr
    assert f"{path}, line 6: expect[0].event: unknown event 'sla.breach'" in result.stderr
    assert "Traceback" not in result.stderr
