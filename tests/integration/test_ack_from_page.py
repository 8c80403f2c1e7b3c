"""Acknowledging from the page (issue 12, part 3), end to end on the real broker.

Intake, sla_timer and notifier run in this process, the ack gateway's HTTP server in a
thread; a business-critical ticket comes in with pika, the notifier pages Kim by email
(an aiosmtpd inbox). The link is taken from the real email: a GET shows the button and
publishes nothing, the POST publishes the `acknowledged` helpdesk update, intake turns
it into `escalation.acknowledged`, and the reminder the warning would have sent is
skipped. A replayed POST is "already acknowledged", a forged token is refused.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from services.ack_gateway.gateway import Gateway
from services.ack_gateway.http import AckServer
from services.ack_gateway.main import publisher
from services.ack_gateway.store import UsedIds
from services.common.store_engine import engine_for
from services.intake.ids import ticket_id
from services.intake.main import IntakeSettings
from services.intake.main import bootstrap as intake_bootstrap
from services.notifier.main import NotifierSettings
from services.notifier.main import bootstrap as notifier_bootstrap
from services.runtime.app import declare_topology
from services.runtime.config import RuntimeSettings
from services.runtime.logging import configure_logging
from services.runtime.names import Names
from services.sla_timer.main import SlaSettings
from services.sla_timer.main import bootstrap as sla_bootstrap
from services.upstream import UpstreamPublisher
from tests.integration.conftest import ACCOUNTS, start_all, wait_for
from tests.support.capture import Capture
from tests.support.sinks import SmtpSink

pytestmark = pytest.mark.broker

SECRET = "ack-secret-for-the-integration-test"
WARN_AFTER_S = 4  # the policy's warning: long enough to acknowledge before it
POLICY = """\
version: "test-ack-1"
calendars:
  always: {always_open: true, timezone: UTC}
rules:
  - name: email-critical
    match: {channel: email, role: super_admin, severity: business_critical}
    budget: 30s
    calendar: always
    kind: guaranteed
    warn: {before: 26s}
  - name: anything-else
    match: {}
    clock: false
"""


def oncall_file(path: Path) -> Path:
    today = datetime.now(UTC).date()
    start = today - timedelta(days=today.weekday() + 7)  # a Monday in the past
    path.write_text(
        f"""
version: ack-from-page
people:
  - {{id: kim, name: Kim, email: kim@support.example, timezone: Europe/Amsterdam}}
  - {{id: lars, name: Lars, email: lars@support.example}}
schedules:
  primary: {{timezone: UTC, rotation: [kim], handoff: {{weekday: mon, hour: 9}}, start: {start}}}
escalation:
  - {{level: 1, schedules: [primary]}}
  - {{level: 2, people: [lars]}}
team_channel: {{name: team, timezone: UTC, console: true}}
"""
    )
    return path


@dataclass
class Desk:
    smtp: SmtpSink
    gateway: AckServer
    events: Capture

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway.port}"


@pytest.fixture
def desk(
    amqp_url: str, prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Desk]:
    configure_logging("console", "error")
    monkeypatch.setenv("ACK_SECRET", SECRET)
    common = {"AMQP_URL": amqp_url, "AMQP_PREFIX": prefix}
    intake = IntakeSettings(**common, ACCOUNTS_FILE=ACCOUNTS, RETRY_INITIAL_S=0.05, RETRY_MAX_S=0.2)
    declare_topology(intake)
    events = Capture.bind(
        amqp_url,
        f"{prefix}test.capture",
        Names(prefix).events_exchange,
        ("escalation.#", "sla.warning.#"),
    )
    used = UsedIds(engine_for(str(tmp_path / "ack.db")))
    used.migrate()
    gateway = AckServer(
        ("127.0.0.1", 0), Gateway(SECRET, used, publisher(RuntimeSettings(**common))), threads=4
    )
    serving = threading.Thread(
        target=gateway.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    serving.start()
    smtp = SmtpSink()
    try:
        yield from _pipeline(common, intake, events, gateway, smtp, tmp_path)
    finally:
        gateway.shutdown()
        gateway.server_close()
        smtp.close()


def _pipeline(
    common: dict[str, str],
    intake: IntakeSettings,
    events: Capture,
    gateway: AckServer,
    smtp: SmtpSink,
    tmp_path: Path,
) -> Iterator[Desk]:
    desk = Desk(smtp, gateway, events)
    (tmp_path / "policy.yaml").write_text(POLICY)
    sla = SlaSettings(
        **common,
        SLA_STORE_URL=str(tmp_path / "clocks.db"),
        SLA_TICK_S=0.2,
        POLICY_FILE=tmp_path / "policy.yaml",
    )
    notifier = NotifierSettings(
        **common,
        ONCALL_FILE=oncall_file(tmp_path / "oncall.yaml"),
        NOTIFIER_STORE_URL=str(tmp_path / "notifier.db"),
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=smtp.port,
        ACK_BASE_URL=desk.base_url,
    )
    services = start_all(
        [
            (intake_bootstrap(intake), intake),
            (sla_bootstrap(sla), sla),
            (notifier_bootstrap(notifier), notifier),
        ]
    )
    try:
        yield desk
    finally:
        for service in reversed(services):
            service.stop()


def form_email(message_id: str) -> bytes:
    """The in-app support form of portal 4411's Super Admin, business-critical ticked."""
    return json.dumps(
        {
            "message_id": message_id,
            "portal_id": 4411,
            "from": "Ana Ruiz <ana@acme.example>",
            "subject": "CMS down for every team",
            "text": "None of our editors can reach the CMS since this morning.",
            "html": None,
            "received_at": datetime.now(UTC).isoformat(),
            "in_reply_to": None,
            "references": [],
            "form": {"business_critical": True, "user_id": "u-19"},
        }
    ).encode()


def of_type(desk: Desk, prefix: str) -> list[dict[str, object]]:
    return [r.json() for r in desk.events.drain() if r.routing_key.startswith(prefix)]


def test_the_link_in_the_email_acknowledges_once_and_stops_the_reminder(
    desk: Desk, amqp_url: str, prefix: str
) -> None:
    message_id = f"<{uuid.uuid4().hex}@acme.example>"
    tid = ticket_id("email", message_id)
    with UpstreamPublisher(amqp_url, prefix) as upstream:
        upstream.publish("email", form_email(message_id))

    wait_for(lambda: len(desk.smtp.messages) == 1, timeout=15)
    page = desk.smtp.messages[0].message
    text = page.get_body(("plain",))
    html_part = page.get_body(("html",))
    assert text is not None and html_part is not None
    [link] = re.findall(r"^Acknowledge:\s+(\S+)\r?$", text.get_content(), re.M)
    assert link.startswith(f"{desk.base_url}/ack?t=") and SECRET not in link
    assert f'href="{link}"' in html_part.get_content().replace("&amp;", "&")

    with httpx.Client(timeout=5) as http:
        shown = http.get(link)  # what a mail scanner's prefetch does too
        assert shown.status_code == 200 and "<form" in shown.text and tid in shown.text
        [token] = re.findall(r'name="t" value="([^"]+)"', shown.text)
        assert of_type(desk, "escalation.acknowledged") == []

        done = http.post(f"{desk.base_url}/ack", data={"t": token})
        assert done.status_code == 200 and "Acknowledged" in done.text
        wait_for(lambda: len(of_type(desk, "escalation.acknowledged")) == 1)
        [acknowledged] = of_type(desk, "escalation.acknowledged")
        data = acknowledged["data"]
        assert isinstance(data, dict) and data["ticket_id"] == tid and data["by"] == "kim"

        replay = http.post(f"{desk.base_url}/ack", data={"t": token})
        assert replay.status_code == 409 and "Already acknowledged" in replay.text
        forged = http.post(f"{desk.base_url}/ack", data={"t": token[:-4] + "AAAA"})
        assert forged.status_code == 403 and "not valid" in forged.text

    # The warning comes (sla_timer does not care), the notifier sends no reminder.
    wait_for(lambda: len(of_type(desk, "sla.warning")) == 1, timeout=WARN_AFTER_S + 10)
    desk.events.take(99, timeout=2.0)  # anything the warning would have caused
    assert len(desk.smtp.messages) == 1, [m.message["Subject"] for m in desk.smtp.messages]
    assert len(of_type(desk, "escalation.acknowledged")) == 1  # nothing from GET or replay
    sent = [e for e in of_type(desk, "escalation.sent")]
    assert [e["data"]["reason"] for e in sent] == ["opened"]  # type: ignore[index]
