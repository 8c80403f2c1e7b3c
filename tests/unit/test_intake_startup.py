"""Intake fails fast without ACCOUNTS_FILE; ACCOUNTS_FILE=none runs without one on purpose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from schemas.events import CloudEvent, TicketOpened
from services.intake.accounts import AccountsError
from services.intake.main import IntakeSettings, bootstrap
from services.runtime.messages import Inbound

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = ROOT / "examples" / "accounts.yaml"
CHAT = json.loads((ROOT / "examples" / "inbound" / "chat.json").read_text(encoding="utf-8"))


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ACCOUNTS_FILE", "MAX_CLOCK_SKEW_S"):
        monkeypatch.delenv(name, raising=False)


def ticket_from(settings: IntakeSettings, body: dict[str, object]) -> TicketOpened:
    handle = bootstrap(settings).handlers["inbound.chat"]
    [out] = handle(
        Inbound(
            body=json.dumps(body).encode(),
            routing_key="inbound.chat",
            exchange="support.inbound",
            content_type="application/json",
        )
    )
    return TicketOpened.model_validate(CloudEvent.model_validate_json(out.body).data)


@pytest.mark.parametrize("value", [None, "", "  "])
def test_intake_refuses_to_start_without_accounts_file(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is not None:
        monkeypatch.setenv("ACCOUNTS_FILE", value)

    with pytest.raises(AccountsError) as info:
        bootstrap(IntakeSettings())

    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("ACCOUNTS_FILE: not set")
    assert "accounts directory" in message and "Premium Support" in message  # what it is for
    assert "ACCOUNTS_FILE=none" in message  # how to run without one on purpose


@pytest.mark.parametrize("value", ["none", "NONE", " None "])
def test_accounts_file_none_runs_without_one_and_warns(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("ACCOUNTS_FILE", value)
    settings = IntakeSettings()

    with capture_logs() as logs:
        ticket = ticket_from(settings, CHAT).ticket

    assert settings.accounts_file == "none"
    assert [(e["event"], e["log_level"]) for e in logs] == [("intake.no_accounts_file", "warning")]
    assert (ticket.premium, ticket.submitter.role) == (False, "unknown")


def test_accounts_file_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACCOUNTS_FILE", str(ACCOUNTS))

    with capture_logs() as logs:
        ticket = ticket_from(IntakeSettings(), CHAT).ticket

    assert logs == []
    assert (ticket.premium, ticket.submitter.role) == (True, "super_admin")


def test_an_accounts_file_with_no_accounts_starts_with_a_warning(tmp_path: Path) -> None:
    empty = tmp_path / "accounts.yaml"
    empty.write_text("accounts: []\n", encoding="utf-8")

    with capture_logs() as logs:
        bootstrap(IntakeSettings(ACCOUNTS_FILE=empty))

    assert [e["event"] for e in logs] == ["intake.empty_accounts_file"]


def test_max_clock_skew_s_sets_how_far_ahead_a_create_time_is_believed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    ahead = datetime.now(UTC) + timedelta(minutes=30)
    body = CHAT | {"started_at": ahead.isoformat()}

    default = ticket_from(IntakeSettings(ACCOUNTS_FILE=ACCOUNTS), body).ticket
    monkeypatch.setenv("MAX_CLOCK_SKEW_S", "3600")
    lenient_settings = IntakeSettings(ACCOUNTS_FILE=ACCOUNTS)
    lenient = ticket_from(lenient_settings, body).ticket

    assert IntakeSettings(ACCOUNTS_FILE=ACCOUNTS, MAX_CLOCK_SKEW_S=300).max_clock_skew_s == 300
    assert lenient_settings.max_clock_skew_s == 3600
    assert default.created_at < ahead and default.reported_created_at == ahead
    assert default.timestamp_note == "future_beyond_skew"
    assert (lenient.created_at, lenient.reported_created_at) == (ahead, None)


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k != "ACCOUNTS_FILE"}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=clean | {"METRICS_PORT": "0", "LOG_LEVEL": "warning"} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("service", ["intake", "all"])
def test_the_cli_says_why_in_one_line_and_exits_non_zero(service: str) -> None:
    result = run_cli("run", service)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ACCOUNTS_FILE: not set")
    assert "ACCOUNTS_FILE=none" in line


def test_the_cli_names_the_line_of_a_malformed_accounts_file(tmp_path: Path) -> None:
    bad = tmp_path / "accounts.yaml"
    bad.write_text("accounts:\n  - {portal_id: acme, name: Acme}\n", encoding="utf-8")

    result = run_cli("run", "intake", ACCOUNTS_FILE=str(bad))

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: {bad}, line 2: accounts[0].portal_id: Input should be a valid integer, "
        "unable to parse string as an integer, got 'acme'"
    ]
