"""The `premium-support` CLI, run as a person runs it, against the real broker."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pika

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
