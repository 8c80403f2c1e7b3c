"""`premium-support oncall check` as an operator runs it, with local SMTP servers (aiosmtpd)
started by the tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from typer.testing import CliRunner, Result

from services.cli import app
from tests.conftest import ROOT
from tests.support.sinks import free_port

EXAMPLE = ROOT / "examples" / "oncall.yaml"  # a signed webhook with ONCALL_WEBHOOK_SECRET
PASSWORD = "smtp-s3cret-pw"


def check(path: Path, **env: str) -> Result:
    """`oncall check` in this process (typer's runner), with only the given SMTP_* and
    ONCALL_* variables set."""
    unset: dict[str, str | None] = {
        k: None for k in os.environ if k.startswith(("SMTP_", "ONCALL_"))
    }
    return CliRunner().invoke(
        app, ["oncall", "check"], env=unset | {"ONCALL_FILE": str(path)} | env
    )


class Accept:
    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        return "250 OK"


def authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and auth_data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 535


@pytest.fixture
def smtp_server() -> Iterator[int]:
    """A local SMTP server without AUTH; yields its port."""
    controller = Controller(Accept(), hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port
    controller.stop()


@pytest.fixture
def smtp_auth_server() -> Iterator[int]:
    """A local SMTP server that offers AUTH (without TLS, as a test can)."""
    controller = Controller(
        Accept(),
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticator,
        auth_require_tls=False,
    )
    controller.start()
    yield controller.port
    controller.stop()


def smtp_env(port: int, **extra: str) -> dict[str, str]:
    return {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), **extra}


def problems(result: Result) -> list[str]:
    assert result.exit_code == 1, result.stdout + result.stderr
    prefix = "the first send would fail: "
    return [line.removeprefix(prefix) for line in result.stdout.splitlines() if prefix in line]


def test_the_example_file_covers_the_next_week(smtp_server: int) -> None:
    env = smtp_env(smtp_server, ONCALL_WEBHOOK_SECRET="hmac-secret")
    result = check(EXAMPLE, **env)
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "level 1 is covered for the next 7 days" in result.stdout
    assert "secrets and SMTP are as the first send needs them" in result.stdout


def test_a_webhook_secret_that_is_not_set(smtp_server: int) -> None:
    [problem] = problems(check(EXAMPLE, **smtp_env(smtp_server)))
    assert problem == (
        "oncall-mira: generic_webhook's secret is not set "
        "(ONCALL_WEBHOOK_SECRET or ONCALL_WEBHOOK_SECRET_FILE)"
    )


def test_email_without_smtp_host() -> None:
    [problem] = problems(check(EXAMPLE, ONCALL_WEBHOOK_SECRET="hmac-secret"))
    assert problem == "email is a contact method, but SMTP_HOST is not set"


def test_smtp_that_does_not_answer() -> None:
    env = smtp_env(free_port(), ONCALL_WEBHOOK_SECRET="hmac-secret")
    [problem] = problems(check(EXAMPLE, **env))
    assert problem.startswith("cannot reach the SMTP server 127.0.0.1:")
    assert problem.endswith("check SMTP_HOST and SMTP_PORT")


def test_smtp_user_but_the_server_offers_no_auth(smtp_server: int) -> None:
    env = smtp_env(smtp_server, SMTP_USERNAME="ops", SMTP_PASSWORD=PASSWORD)
    result = check(EXAMPLE, ONCALL_WEBHOOK_SECRET="hmac-secret", **env)
    [problem] = problems(result)
    assert f"SMTP server 127.0.0.1:{smtp_server} offers no AUTH" in problem
    assert PASSWORD not in result.stdout + result.stderr


def test_starttls_required_but_not_offered(smtp_server: int) -> None:
    env = smtp_env(smtp_server, SMTP_STARTTLS="true", ONCALL_WEBHOOK_SECRET="hmac-secret")
    [problem] = problems(check(EXAMPLE, **env))
    assert "offers no STARTTLS, but SMTP_STARTTLS is set" in problem


def test_smtp_auth_with_the_right_and_a_wrong_password(smtp_auth_server: int) -> None:
    secret = {"ONCALL_WEBHOOK_SECRET": "hmac-secret"}
    good = smtp_env(smtp_auth_server, SMTP_USERNAME="ops", SMTP_PASSWORD=PASSWORD)
    assert check(EXAMPLE, **good, **secret).exit_code == 0

    bad = smtp_env(smtp_auth_server, SMTP_USERNAME="ops", SMTP_PASSWORD="wrong-pw-123")
    result = check(EXAMPLE, **bad, **secret)
    [problem] = problems(result)
    assert "refused the login of 'ops'" in problem
    assert "wrong-pw-123" not in result.stdout + result.stderr


def test_an_unset_oncall_file_is_said_in_words() -> None:
    result = check(EXAMPLE, ONCALL_FILE="")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: ONCALL_FILE is not set: point it at the on-call file"


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
    assert result.exit_code == 1
    assert f"nobody on call at level 1: {ends.isoformat()}T09:00:00+00:00" in result.stdout


def test_a_malformed_file_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "oncall.yaml"
    path.write_text("people:\n  - {id: kim, name: Kim, email: not-an-address}\nescalation: []\n")
    result = check(path)
    assert result.exit_code == 2
    assert "line 2" in result.stderr
