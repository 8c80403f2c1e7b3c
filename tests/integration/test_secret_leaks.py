"""No secret leaves the notifier (the issue's "webhook URLs leak"): pages go to endpoints
that refuse, answer 500 (echoing the request line and body back, as a careless proxy
does), or never answer, and to an SMTP server that refuses the login. Their URLs carry a
marker in path and query; the paging routing key, the signed webhook's HMAC secret (from
a `_FILE`) and the SMTP password (from `SMTP_PASSWORD_FILE`) carry markers of their own.

The real notifier runs as a process (`premium-support run notifier`, LOG_LEVEL=debug)
on the real broker with a short retry budget, until every page was given up. Then
every event on support.events (a test queue bound with `#`), every dead letter of the
notifier's queues, its `/metrics` and `/healthz` and every line the process wrote
(stdout and stderr, all levels) is searched for the markers, as they are and encoded
as they cross the wire: none is found.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from services.intake.main import IntakeSettings
from services.runtime.names import Names
from tests.conftest import ROOT
from tests.integration.conftest import wait_for
from tests.integration.test_notifier import events_for_ticket, publish
from tests.support.capture import Capture, Received
from tests.support.sinks import BlackHole, free_port

pytestmark = pytest.mark.broker

BUDGET_S = 6.0  # the retry budget: over once the first round reached the black hole


class Echo500(ThreadingHTTPServer):
    """Answers every POST with 500 and the request line, body and headers as its text."""

    daemon_threads = True

    def __init__(self) -> None:
        self.hits = 0

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler) -> None:  # `self` is the server here
                body = handler.rfile.read(int(handler.headers.get("Content-Length", "0")))
                self.hits += 1
                echo = f"{handler.requestline}\n".encode() + body + f"\n{handler.headers}".encode()
                handler.send_response(500)
                handler.send_header("Content-Length", str(len(echo)))
                handler.end_headers()
                handler.wfile.write(echo)

            def log_message(handler, format: str, *args: Any) -> None:
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}{path}"


class RefusingAuth:
    """aiosmtpd handler and authenticator: every login fails (535)."""

    def __init__(self) -> None:
        self.logins = 0

    def __call__(self, *args: Any) -> AuthResult:
        self.logins += 1
        return AuthResult(success=False, handled=False)

    async def handle_DATA(self, *args: Any) -> str:
        return "250 never reached"


@dataclass
class Markers:
    path: str
    query: str
    routing_key: str
    hmac: str
    password: str

    @classmethod
    def new(cls) -> Markers:
        run = uuid.uuid4().hex[:10]
        return cls(*(f"{kind}{run}" for kind in ("LKpath", "LKquery", "LKroute", "LKhmac", "LKpw")))

    def forms(self) -> list[str]:
        """Each marker, and the password as AUTH LOGIN / PLAIN carry it."""
        plain = base64.b64encode(f"\0ps-user\0{self.password}".encode()).decode()
        login = base64.b64encode(self.password.encode()).decode()
        return [*vars(self).values(), plain, login]


@dataclass
class Endpoints:
    echo: Echo500
    hole: BlackHole
    refused_port: int
    smtp: Controller
    auth: RefusingAuth


@pytest.fixture
def endpoints() -> Iterator[Endpoints]:
    auth = RefusingAuth()
    smtp = Controller(
        auth,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=auth,
        auth_require_tls=False,
    )
    smtp.start()
    echo, hole = Echo500(), BlackHole("127.0.0.1", free_port())
    yield Endpoints(echo, hole, free_port(), smtp, auth)
    smtp.stop()
    echo.shutdown()
    echo.server_close()
    hole.close()


def secret_url(base: str, m: Markers) -> str:
    return f"{base}/services/T01/{m.path}?token={quote(m.query)}"


def write_oncall(path: Path, to: Endpoints, m: Markers) -> Path:
    start = (datetime.now(UTC) - timedelta(days=datetime.now(UTC).weekday() + 7)).date()
    refused = f"http://127.0.0.1:{to.refused_port}"
    hole = f"http://127.0.0.1:{to.hole.sock.getsockname()[1]}"
    path.write_text(
        f"""
version: leak-test
people:
  - id: kim
    name: Kim
    email: kim@support.example
    paging_webhook: {{url: "{secret_url(refused, m)}", routing_key: "{m.routing_key}"}}
    chat_webhook: "{secret_url(to.echo.url(""), m)}"
    generic_webhook: {{url: "{secret_url(hole, m)}", secret_env: LEAK_HOOK_SECRET}}
  - id: mira
    name: Mira
    email: mira@support.example
    paging_webhook: {{url: "{secret_url(to.echo.url(""), m)}", routing_key: "{m.routing_key}"}}
schedules:
  primary: {{timezone: UTC, rotation: [kim], handoff: {{weekday: mon, hour: 9}}, start: {start}}}
  secondary: {{timezone: UTC, rotation: [mira], handoff: {{weekday: mon, hour: 9}}, start: {start}}}
escalation:
  - {{level: 1, schedules: [primary]}}
  - {{level: 2, schedules: [secondary]}}
team_channel: {{name: team, chat_webhook: "{secret_url(to.echo.url("/team"), m)}", timezone: UTC}}
channels:
  page: [paging_webhook, chat_webhook, email, generic_webhook]
"""
    )
    return path


def run_notifier(
    settings: IntakeSettings, tmp_path: Path, to: Endpoints, m: Markers, ops_port: int
) -> subprocess.Popen[bytes]:
    (tmp_path / "hook-secret").write_text(m.hmac + "\n")
    (tmp_path / "smtp-password").write_text(m.password + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "LEAK_"))}
    env |= {
        "AMQP_URL": settings.amqp_url,
        "AMQP_PREFIX": settings.amqp_prefix,
        "ONCALL_FILE": str(write_oncall(tmp_path / "oncall.yaml", to, m)),
        "NOTIFIER_STORE_URL": str(tmp_path / "notifier.db"),
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(to.smtp.port),
        "SMTP_USERNAME": "ps-user",
        "SMTP_PASSWORD_FILE": str(tmp_path / "smtp-password"),
        "LEAK_HOOK_SECRET_FILE": str(tmp_path / "hook-secret"),
        "SEND_RETRY_BUDGET_S": str(BUDGET_S),
        "SEND_RETRY_INITIAL_S": "0.2",
        "SEND_RETRY_MAX_S": "0.5",
        "LOG_LEVEL": "debug",
        "LOG_FORMAT": "json",
        "METRICS_PORT": str(ops_port),
        "METRICS_HOST": "127.0.0.1",
    }
    script = Path(sys.executable).with_name("premium-support")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "services.cli"]
    out = (tmp_path / "notifier.log").open("wb")
    return subprocess.Popen(
        [*command, "run", "notifier"], cwd=ROOT, env=env, stdout=out, stderr=out
    )


def texts(messages: list[Received]) -> list[str]:
    return [f"{m.routing_key} {m.headers!r} {m.body.decode('utf-8', 'replace')}" for m in messages]


def test_no_event_dead_letter_or_log_line_carries_a_secret(
    settings: IntakeSettings, events: Capture, tmp_path: Path, endpoints: Endpoints
) -> None:
    markers = Markers.new()
    names = Names(settings.amqp_prefix)
    dead = [
        Capture(settings.amqp_url, names.dead_letter_queue(key))
        for key in ("notifier_urgent", "notifier")
    ]
    opened, breached = events_for_ticket(f"T-email-{uuid.uuid4().hex[:16]}")
    ops = f"http://127.0.0.1:{free_port()}"
    notifier = run_notifier(settings, tmp_path, endpoints, markers, int(ops.rsplit(":", 1)[1]))
    try:
        for event in (opened, breached):
            publish(settings.amqp_url, settings.amqp_prefix, event)

        def given_up() -> bool:
            assert notifier.poll() is None, f"the notifier exited with {notifier.returncode}"
            failed = [e for e in events.drain() if e.routing_key == "escalation.failed"]
            return len(failed) >= 3  # kim's page for the opening and the breach, mira's

        # One round: refused, 500, 535, then the black hole's 10 s timeout.
        wait_for(given_up, timeout=60)
        wait_for(lambda: sum(len(d.drain()) for d in dead) >= 3, timeout=15)
        served = [httpx.get(f"{ops}{path}", timeout=5).text for path in ("/metrics", "/healthz")]
    finally:
        notifier.send_signal(signal.SIGTERM)
        notifier.wait(timeout=30)
    log = (tmp_path / "notifier.log").read_text(errors="replace")
    letters = [m for d in dead for m in d.drain()]
    searched = texts(events.drain()) + texts(letters) + served + log.splitlines()

    # Every kind of failure really happened, told by person, channel and host only.
    assert endpoints.echo.hits >= 2 and endpoints.auth.logins >= 1
    attempts = [line for line in log.splitlines() if "notification.attempt_failed" in line]
    for where in (
        "paging webhook at 127.0.0.1: ConnectError",
        "chat webhook at 127.0.0.1: HTTP 500",
        "SMTP 535",
        "generic webhook at 127.0.0.1: timed out",
    ):
        assert any(where in line for line in attempts), f"no attempt failed with {where!r}"
    failed = [e.json()["data"] for e in events.received if e.routing_key == "escalation.failed"]
    assert {f["person"] for f in failed} == {"kim", "mira"}
    assert all(f["error"].startswith(f"{f['person']} by ") for f in failed)
    assert letters and all("x-error" in m.headers for m in letters)
    assert '"level": "debug"' in log, "DEBUG lines were not captured"  # ops_http.request

    leaks = [(form, text[:300]) for text in searched for form in markers.forms() if form in text]
    assert leaks == []
