"""The whole pipeline on the real broker: intake, sla_timer and notifier running in this
process, fed from the outside with pika, escalating to an SMTP server (aiosmtpd) and
HTTP servers started here and named in an on-call file written for the test."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from services.intake.main import IntakeSettings
from services.notifier.main import NotifierSettings
from services.notifier.main import bootstrap as notifier_bootstrap
from services.notifier.oncall import coverage_gaps, load_oncall
from services.runtime.app import ServiceRunner
from services.runtime.metrics import RuntimeMetrics
from services.sla_timer.main import SlaSettings
from services.sla_timer.main import bootstrap as sla_bootstrap
from tests.integration.conftest import (  # noqa: F401 - fixtures shared with the integration tests
    RunningService,
    events,
    intake,
    prefix,
    settings,
    upstream,
)
from tests.integration.test_notifier_channels import (  # noqa: F401 - fixtures
    Inbox,
    Serve,
    Server,
    always,
    serve,
    smtp,
)
from tests.support.capture import Capture

# The business-critical Super Admin email clock of the e2e policy: due 12 s after the
# ticket was created, warned 4 s before that. Long enough for the test to see the
# level-1 page and have the acknowledgement of one ticket processed well before the
# warnings fire (at +8 s), short enough for a test.
BUDGET = timedelta(seconds=12)
WARN_BEFORE = timedelta(seconds=4)

POLICY = f"""
version: "e2e-1"
calendars:
  always: {{always_open: true, timezone: UTC}}
rules:
  - name: not-premium
    match: {{premium: false}}
    clock: false
  - name: email-critical-e2e
    match: {{channel: email, role: super_admin, severity: business_critical}}
    budget: {int(BUDGET.total_seconds())}s
    calendar: always
    kind: guaranteed
    warn: {{before: {int(WARN_BEFORE.total_seconds())}s}}
  - name: anything-else
    match: {{}}
    budget: 1h
    calendar: always
    kind: target
    warn: {{fraction: 0.5}}
"""


@dataclass
class OnCallDesk:
    """Where the on-call people are reached: kim (primary: level 1; pager and chat),
    lars (secondary; pager) and mira (support manager; email only) on level 2, the team
    channel, and one SMTP inbox."""

    path: Path
    kim_page: Server
    kim_chat: Server
    lars_page: Server
    team: Server
    inbox: Inbox
    smtp_port: int

    @property
    def pagers(self) -> dict[str, Server]:
        return {"kim": self.kim_page, "lars": self.lars_page}

    def keys(self) -> list[str]:
        """The notification key of every request and mail received, in no order."""
        servers = (self.kim_page, self.kim_chat, self.lars_page, self.team)
        keys = [r.headers["X-Notification-Key"] for s in servers for r in list(s.requests)]
        keys += [str(m["X-Premium-Support-Key"]) for _, m in list(self.inbox.messages)]
        return keys


def write_oncall(path: Path, desk: dict[str, Server]) -> Path:
    today = datetime.now(UTC).date()
    start = today - timedelta(days=today.weekday() + 7)  # a Monday in the past
    path.write_text(
        f"""
version: e2e
people:
  - {{id: kim, name: Kim, email: kim@support.example, timezone: Europe/Amsterdam,
     chat_webhook: "{desk["kim_chat"].url}",
     paging_webhook: {{url: "{desk["kim_page"].url}", routing_key: RKIM}}}}
  - {{id: lars, name: Lars, email: lars@support.example,
     paging_webhook: {{url: "{desk["lars_page"].url}", routing_key: RLARS}}}}
  - {{id: mira, name: Mira (support manager), email: mira@support.example}}
schedules:
  primary: {{timezone: UTC, rotation: [kim], handoff: {{weekday: mon, hour: 9}}, start: {start}}}
  secondary: {{timezone: UTC, rotation: [lars], handoff: {{weekday: mon, hour: 9}}, start: {start}}}
escalation:
  - {{level: 1, schedules: [primary]}}
  - {{level: 2, schedules: [secondary], people: [mira]}}
team_channel: {{name: team, chat_webhook: "{desk["team"].url}", timezone: UTC}}
link_template: "https://helpdesk.example/tickets/{{ticket_id}}"
"""
    )
    return path


@pytest.fixture
def desk(tmp_path: Path, serve: Serve, smtp: tuple[Inbox, int]) -> OnCallDesk:  # noqa: F811
    servers = {
        "kim_page": serve(always(202)),
        "kim_chat": serve(always(200)),
        "lars_page": serve(always(202)),
        "team": serve(always(200)),
    }
    path = write_oncall(tmp_path / "oncall.yaml", servers)
    # Someone is on call at level 1 every hour of the next 7 days.
    assert coverage_gaps(load_oncall(path), datetime.now(UTC)) == []
    inbox, port = smtp
    return OnCallDesk(path=path, inbox=inbox, smtp_port=port, **servers)


@pytest.fixture
def pipeline(
    settings: IntakeSettings,  # noqa: F811
    events: Capture,  # noqa: F811
    intake: RunningService,  # noqa: F811
    desk: OnCallDesk,
    tmp_path: Path,
) -> Iterator[None]:
    """sla_timer and notifier next to the running intake, all on the test's prefix."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    common = {"AMQP_URL": settings.amqp_url, "AMQP_PREFIX": settings.amqp_prefix}
    sla = SlaSettings(
        **common, SLA_STORE_URL=str(tmp_path / "clocks.db"), POLICY_FILE=policy, SLA_TICK_S=0.1
    )
    notifier = NotifierSettings(
        **common,
        ONCALL_FILE=desk.path,
        NOTIFIER_STORE_URL=str(tmp_path / "notifier.db"),
        POLICY_FILE=policy,
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=desk.smtp_port,
        SEND_RETRY_INITIAL_S=0.05,
    )
    services = [
        RunningService(ServiceRunner(spec, s, RuntimeMetrics.create())).start()
        for spec, s in ((sla_bootstrap(sla), sla), (notifier_bootstrap(notifier), notifier))
    ]
    yield
    for service in services:
        service.stop()
