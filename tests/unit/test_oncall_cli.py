"""`premium-support oncall check`, run as an operator runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.conftest import ROOT


def check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "oncall", "check"],
        cwd=ROOT,
        env=os.environ | {"ONCALL_FILE": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_example_file_covers_the_next_week() -> None:
    result = check(ROOT / "examples" / "oncall.yaml")
    assert result.returncode == 0, result.stderr
    assert "level 1 is covered for the next 7 days" in result.stdout


def test_a_rotation_that_ends_leaves_a_gap(tmp_path: Path) -> None:
    today = datetime.now(UTC).date()
    monday = today - timedelta(days=today.weekday() + 7)
    ends = today + timedelta(days=3)
    path = tmp_path / "oncall.yaml"
    path.write_text(
        f"""
people:
  - {{id: kim, name: Kim, email: kim@support.example}}
schedules:
  primary: {{timezone: UTC, rotation: [kim], handoff: {{weekday: mon, hour: 9}},
            start: {monday}, end: {ends}}}
escalation:
  - {{level: 1, schedules: [primary]}}
  - {{level: 2, people: [kim]}}
team_channel: {{name: team, chat_webhook: "https://hooks.example/team"}}
"""
    )
    result = check(path)
    assert result.returncode == 1
    assert f"nobody on call at level 1: {ends.isoformat()}T09:00:00+00:00" in result.stdout


def test_a_malformed_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "oncall.yaml"
    path.write_text("people:\n  - {id: kim, name: Kim, email: not-an-address}\nescalation: []\n")
    result = check(path)
    assert result.returncode == 2
    assert "line 2" in result.stderr
