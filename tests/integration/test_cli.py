"""The `premium-support` CLI, run as a person runs it, against the real broker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pika
import pytest

from services.upstream import pika_parameters
from tests.conftest import ROOT


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env=os.environ | (env or {}),
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_schemas_export_check_passes_on_the_committed_files() -> None:
    result = cli("schemas", "export", "--check")
    assert result.returncode == 0, result.stderr


def test_schemas_export_check_fails_on_drift(tmp_path: Path) -> None:
    root = tmp_path / "schemas"
    shutil.copytree(ROOT / "schemas" / "json", root / "json")
    shutil.copy(ROOT / "schemas" / "asyncapi.yaml", root / "asyncapi.yaml")
    drifted = root / "json" / "ticket.schema.json"
    drifted.write_text(drifted.read_text().replace('"premium"', '"premium_support"'))

    result = cli("schemas", "export", "--check", "--root", str(root))
    assert result.returncode == 1
    assert "json/ticket.schema.json" in result.stderr

    assert cli("schemas", "export", "--root", str(root)).returncode == 0
    assert cli("schemas", "export", "--check", "--root", str(root)).returncode == 0


def test_topology_declare_then_publish_as_upstream(amqp_url: str, prefix: str) -> None:
    env = {"AMQP_URL": amqp_url, "AMQP_PREFIX": prefix}
    declared = cli("topology", "declare", env=env)
    assert declared.returncode == 0, declared.stderr
    assert f"declared {prefix}intake.inbound.dead" in declared.stdout
    assert f"declared {prefix}support.events.log" in declared.stdout
    assert cli("topology", "declare", env=env).returncode == 0  # idempotent

    chat = cli("publish", "chat", "examples/inbound/chat.json", env=env)
    mail = cli("publish", "email", "examples/inbound/email-raw.eml", env=env)
    assert chat.returncode == 0 and mail.returncode == 0, chat.stderr + mail.stderr

    conn = pika.BlockingConnection(pika_parameters(amqp_url))
    try:
        ch = conn.channel()
        got = [ch.basic_get(f"{prefix}intake.inbound", auto_ack=True) for _ in range(2)]
    finally:
        conn.close()
    assert [(m.routing_key, p.content_type) for m, p, _ in got] == [
        ("inbound.chat", "application/json"),
        ("inbound.email", "message/rfc822"),
    ]
    assert got[1][2] == (ROOT / "examples/inbound/email-raw.eml").read_bytes()


def test_publish_rejects_an_unknown_channel(tmp_path: Path) -> None:
    body = tmp_path / "x.json"
    body.write_text("{}")
    result = cli("publish", "fax", str(body))
    assert result.returncode != 0
    assert "channel must be chat, email, phone or helpdesk" in result.stderr


# -- one clear line when the broker or the configuration is not right ------------------

SECRET = "s3cr3t-Pw0rd"
# A real accounts file: ACCOUNTS_FILE=none is allowed but says so in a warning line.
QUIET = {"ACCOUNTS_FILE": "examples/accounts.yaml", "METRICS_PORT": "0", "LOG_LEVEL": "warning"}
COMMANDS = {
    "topology declare": ("topology", "declare"),
    "publish": ("publish", "chat", "examples/inbound/chat.json"),
    "run": ("run", "intake"),
}


def with_password(amqp_url: str, password: str) -> str:
    parts = urlsplit(amqp_url)
    return parts._replace(
        netloc=f"{parts.username}:{password}@{parts.hostname}:{parts.port}"
    ).geturl()


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert SECRET not in line
    return line


@pytest.mark.parametrize("command", COMMANDS)
def test_a_broker_that_does_not_answer_is_one_line(command: str, prefix: str) -> None:
    env = {"AMQP_URL": f"amqp://guest:{SECRET}@127.0.0.1:1//", "AMQP_PREFIX": prefix}
    env |= QUIET
    line = one_line(cli(*COMMANDS[command], env=env))
    assert line.startswith(f"error: {command}")
    assert "cannot reach the broker at amqp://guest@127.0.0.1:1//" in line
    assert "check that RabbitMQ runs there" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_a_wrong_password_is_one_line(command: str, amqp_url: str, prefix: str) -> None:
    wrong = with_password(amqp_url, SECRET)
    env = {"AMQP_URL": wrong, "AMQP_PREFIX": prefix}
    env |= QUIET
    line = one_line(cli(*COMMANDS[command], env=env))
    assert line.startswith(f"error: {command}")
    assert f"refused the login of user {urlsplit(amqp_url).username!r} (ACCESS_REFUSED)" in line
    assert with_password(amqp_url, "").replace(":@", "@") in line  # the URL, masked


@pytest.mark.parametrize("service", ["notifier", "all"])
def test_an_unset_oncall_file_is_said_in_words(service: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ONCALL_FILE")}
    env |= QUIET | {"SLA_STORE_URL": str(tmp_path / "clocks.db")}
    result = subprocess.run(
        [sys.executable, "-m", "services.cli", "run", service],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: configuration: ONCALL_FILE is not set")


@pytest.mark.parametrize("command", COMMANDS)
def test_a_malformed_broker_url_is_one_line(command: str, prefix: str) -> None:
    env = {"AMQP_URL": f"amqp://guest:{SECRET}@127.0.0.1:notaport//", "AMQP_PREFIX": prefix}
    line = one_line(cli(*COMMANDS[command], env=env | QUIET))
    assert line.startswith(f"error: {command}")
    assert "AMQP_URL amqp://guest@127.0.0.1:notaport// is not a broker URL" in line


@pytest.mark.parametrize("command", COMMANDS)
def test_a_malformed_setting_is_one_line(command: str, prefix: str) -> None:
    result = cli(*COMMANDS[command], env=QUIET | {"AMQP_PREFIX": prefix, "LOG_FORMAT": "xml"})
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: configuration: LOG_FORMAT: String should match pattern")
