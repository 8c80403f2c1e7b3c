"""The notifier on the real broker, with a real SMTP server and paging/chat endpoints:
one notification per key, however often an event is delivered."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pika
import pytest

from schemas.events import CloudEvent, SlaBreached, TicketOpened, make_event
from schemas.ticket import Submitter, Ticket
from services.intake.main import IntakeSettings
from services.notifier.main import NotifierSettings, bootstrap
from services.runtime.app import ServiceRunner
from services.runtime.metrics import RuntimeMetrics
from services.upstream import pika_parameters
from tests.integration.conftest import RunningService
from tests.integration.test_notifier_channels import (  # noqa: F401 - fixtures
    Inbox,
    Server,
    always,
    free_port,
    serve,
    smtp,
)
from tests.support.capture import Capture

TID = "T-email-0207b44e3d661cc0"
NOW = datetime.now(UTC).replace(microsecond=0)


def oncall_file(tmp_path: Path, kim: Server, mira: Server, team: Server) -> Path:
    start = (NOW - timedelta(days=NOW.weekday() + 7)).date()  # a Monday in the past
    text = f"""
version: test
people:
  - {{id: kim, name: Kim, email: kim@support.example, timezone: Europe/Amsterdam,
     paging_webhook: {{url: "{kim.url}", routing_key: RKIM}}}}
  - {{id: mira, name: Mira, email: mira@support.example,
     paging_webhook: {{url: "{mira.url}", routing_key: RMIRA}}}}
schedules:
  primary: {{timezone: UTC, rotation: [kim], handoff: {{weekday: mon, hour: 9}}, start: {start}}}
  secondary: {{timezone: UTC, rotation: [mira], handoff: {{weekday: mon, hour: 9}}, start: {start}}}
escalation:
  - {{level: 1, schedules: [primary]}}
  - {{level: 2, schedules: [secondary]}}
team_channel: {{name: team, chat_webhook: "{team.url}", timezone: UTC}}
"""
    path = tmp_path / "oncall.yaml"
    path.write_text(text)
    return path


def events_for_ticket(
    tid: str = TID,
    now: datetime = NOW,
    subject: str = "Nobody can log in",
    correlation_id: str = "c-1",
) -> tuple[CloudEvent, CloudEvent]:
    """A premium business-critical ticket.opened and its breach a minute past due."""
    ticket = Ticket(
        ticket_id=tid,
        channel="email",
        portal_id=4411,
        account_name="Acme Corp",
        premium=True,
        submitter=Submitter(role="super_admin", email="ana@acme.example"),
        severity="business_critical",
        submitter_marked_critical=True,
        subject=subject,
        text="Since 09:50 nobody on our team can log in.",
        created_at=now - timedelta(minutes=31),
    )
    opened = make_event(
        TicketOpened(ticket=ticket),
        service="intake",
        subject=tid,
        cause="opened",
        correlation_id=correlation_id,
        now=now,
    )
    breach = SlaBreached(
        ticket_id=tid,
        severity="business_critical",
        guaranteed=True,
        policy_rule="email-super-admin-business-critical",
        policy_version="2026-11-01",
        started_at=ticket.created_at,
        due_at=ticket.created_at + timedelta(minutes=30),
        fired_at=now,
        lateness_ms=60_000,
    )
    breached = make_event(
        breach,
        service="sla_timer",
        subject=tid,
        cause="breach",
        correlation_id=correlation_id,
        now=now,
    )
    return opened, breached


def publish(url: str, prefix: str, event: CloudEvent, times: int = 1) -> None:
    conn = pika.BlockingConnection(pika_parameters(url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        for _ in range(times):
            ch.basic_publish(
                f"{prefix}support.events",
                event.routing_key,
                event.model_dump_json().encode(),
                pika.BasicProperties(message_id=event.id, delivery_mode=2),
            )
    finally:
        conn.close()


@pytest.fixture
def notifier_env(
    settings: IntakeSettings,
    events: Capture,
    tmp_path: Path,
    serve,  # noqa: F811 - the fixture imported above
    smtp,  # noqa: F811
) -> Iterator[tuple[NotifierSettings, Server, Server, tuple[Inbox, int]]]:
    kim, mira, team = serve(always(202)), serve(always(202)), serve(always(200))
    inbox, port = smtp
    notifier_settings = NotifierSettings(
        AMQP_URL=settings.amqp_url,
        AMQP_PREFIX=settings.amqp_prefix,
        ONCALL_FILE=oncall_file(tmp_path, kim, mira, team),
        NOTIFIER_STORE_URL=str(tmp_path / "notifier.db"),
        SMTP_HOST="127.0.0.1",
        SMTP_PORT=port,
        SEND_RETRY_INITIAL_S=0.05,
    )
    yield notifier_settings, kim, mira, (inbox, port)


def run_notifier(settings: NotifierSettings) -> RunningService:
    return RunningService(
        ServiceRunner(bootstrap(settings), settings, RuntimeMetrics.create())
    ).start()


def wait(predicate, timeout: float = 15) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_same_breach_three_times_pages_each_person_once(notifier_env, events: Capture) -> None:  # type: ignore[no-untyped-def]
    settings, kim, mira, (inbox, _port) = notifier_env
    opened, breached = events_for_ticket()
    service = run_notifier(settings)
    try:
        publish(settings.amqp_url, settings.amqp_prefix, opened)
        publish(settings.amqp_url, settings.amqp_prefix, breached, times=3)
        wait(lambda: len(mira.requests) >= 1 and len(kim.requests) >= 2)
        time.sleep(1.5)  # any duplicate would have arrived by now
    finally:
        service.stop()

    kim_keys = Counter(r.headers.get("X-Notification-Key") for r in kim.requests)
    mira_keys = Counter(r.headers.get("X-Notification-Key") for r in mira.requests)
    assert all(n == 1 for n in kim_keys.values()), kim_keys
    assert all(n == 1 for n in mira_keys.values()), mira_keys
    assert {k.split(":")[1] for k in kim_keys} == {"opened", "breached"}
    assert {k.split(":")[1] for k in mira_keys} == {"breached"}
    assert [r.json()["event_action"] for r in mira.requests] == ["trigger"]
    assert mira.requests[0].json()["dedup_key"] == f"{TID}:breached"

    sent = [r.json() for r in events.take(1, settle=0.5) if r.routing_key == "escalation.sent"]
    sent_keys = Counter(e["data"]["notification_key"] for e in sent)
    assert all(n == 1 for n in sent_keys.values()), sent_keys
    email_keys = {k for k in sent_keys if k.endswith(":email")}
    assert set(sent_keys) == set(kim_keys) | set(mira_keys) | email_keys
    message_ids = Counter(message["Message-ID"] for _, message in inbox.messages)
    assert len(message_ids) == len(email_keys) == len(inbox.messages)  # one mail per key
    recipients = sorted(envelope.rcpt_tos[0] for envelope, _ in inbox.messages)
    assert recipients == ["kim@support.example", "kim@support.example", "mira@support.example"]


def test_a_restarted_notifier_does_not_page_again(notifier_env, events: Capture) -> None:  # type: ignore[no-untyped-def]
    settings, kim, mira, _ = notifier_env
    opened, breached = events_for_ticket()
    first = run_notifier(settings)
    try:
        publish(settings.amqp_url, settings.amqp_prefix, opened)
        publish(settings.amqp_url, settings.amqp_prefix, breached)
        wait(lambda: len(mira.requests) >= 1)
    finally:
        first.stop()
    second = run_notifier(settings)  # a new process would have an empty dedup window too
    try:
        publish(settings.amqp_url, settings.amqp_prefix, breached)  # redelivered after restart
        time.sleep(2)
    finally:
        second.stop()
    assert len(mira.requests) == 1
    assert (
        Counter(r.headers.get("X-Notification-Key") for r in kim.requests).most_common(1)[0][1] == 1
    )


def test_smtp_down_fails_dead_letters_and_a_replay_delivers_once_it_is_back(  # type: ignore[no-untyped-def]
    notifier_env, events: Capture
) -> None:
    settings, kim, _, (inbox, _) = notifier_env
    down = settings.model_copy(update={"smtp_port": free_port()})  # nobody listens there
    opened, _ = events_for_ticket()
    service = run_notifier(down)
    try:
        publish(down.amqp_url, down.amqp_prefix, opened)
        dead = Capture(down.amqp_url, f"{down.amqp_prefix}notifier.events.dead").take(1)
    finally:
        service.stop()
    [letter] = dead
    assert letter.headers["x-error-reason"] == "smtp_unavailable"
    assert "kim:email" in letter.headers["x-error"]
    failed = [r.json() for r in events.take(1, settle=0.5) if r.routing_key == "escalation.failed"]
    assert [f["data"]["notification_key"] for f in failed] == [f"{TID}:opened:1:kim:email"]
    assert len(kim.requests) == 1  # the page itself went out
    assert inbox.messages == []

    # SMTP is back: replay the dead letter where it came from.
    service = run_notifier(settings)
    try:
        conn = pika.BlockingConnection(pika_parameters(settings.amqp_url))
        try:
            conn.channel().basic_publish(
                letter.headers["x-original-exchange"],
                letter.headers["x-original-routing-key"],
                letter.body,
                pika.BasicProperties(message_id=letter.message_id, delivery_mode=2),
            )
        finally:
            conn.close()
        wait(lambda: len(inbox.messages) >= 1)
        time.sleep(1.0)
    finally:
        service.stop()
    assert [envelope.rcpt_tos for envelope, _ in inbox.messages] == [["kim@support.example"]]
    assert len(kim.requests) == 1  # the page is not sent again on replay
