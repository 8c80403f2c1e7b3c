"""The notifier on the real broker, with a real SMTP server and paging/chat endpoints:
one notification per key, however often an event is delivered."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pika
import pytest

from schemas.events import CloudEvent, SlaBreached, TicketOpened, TicketResolved, make_event
from schemas.ticket import Submitter, Ticket
from services.common.store_engine import engine_for
from services.intake.main import IntakeSettings
from services.notifier.ledger import Ledger
from services.notifier.main import NotifierSettings, bootstrap
from services.notifier.outcomes import NOTIFICATION_TYPE
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
from tests.support.capture import Capture, Received

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

    # One notification per person per reason and level, by their first contact method
    # for a page (the paging webhook); email is only a fallback, and nothing failed.
    kim_keys = Counter(r.headers.get("X-Notification-Key") for r in kim.requests)
    mira_keys = Counter(r.headers.get("X-Notification-Key") for r in mira.requests)
    assert kim_keys == Counter(
        [f"{TID}:opened:1:kim:paging_webhook", f"{TID}:breached:1:kim:paging_webhook"]
    )
    assert mira_keys == Counter([f"{TID}:breached:2:mira:paging_webhook"])
    assert [r.json()["event_action"] for r in mira.requests] == ["trigger"]
    assert mira.requests[0].json()["dedup_key"] == f"{TID}:breached"
    assert inbox.messages == []

    sent = [r.json() for r in events.take(3, settle=0.5) if r.routing_key == "escalation.sent"]
    sent_keys = Counter(e["data"]["notification_key"] for e in sent)
    assert sent_keys == kim_keys + mira_keys  # one escalation.sent per key
    assert {e["data"]["channel"] for e in sent} == {"paging_webhook"}


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


def email_only_oncall(tmp_path: Path, team: Server) -> Path:
    """kim on call alone (level 2 too: nobody to escalate to), by email only: a failing
    SMTP server reaches nobody."""
    start = (NOW - timedelta(days=NOW.weekday() + 7)).date()
    path = tmp_path / "oncall-email.yaml"
    path.write_text(
        f"""
people:
  - {{id: kim, name: Kim, email: kim@support.example}}
schedules:
  primary: {{timezone: UTC, rotation: [kim], handoff: {{weekday: mon, hour: 9}}, start: {start}}}
escalation:
  - {{level: 1, schedules: [primary]}}
  - {{level: 2, people: [kim]}}
team_channel: {{name: team, chat_webhook: "{team.url}", timezone: UTC}}
digest_interval: 1s
"""
    )
    return path


KIM_BY_EMAIL = f"{TID}:opened:1:kim:email"


def give_up_on_email(  # type: ignore[no-untyped-def]
    settings: NotifierSettings, start_server, events: Capture
) -> tuple[NotifierSettings, Server, Received]:
    """kim's page by email while nobody listens on the SMTP port, with a short retry
    budget: given up, dead-lettered (returned) and told to the team channel."""
    team = start_server(always(200))
    on_email = settings.model_copy(
        update={
            "oncall_file": email_only_oncall(settings.oncall_file.parent, team),
            "send_retry_budget_s": 1.5,
            "send_retry_max_s": 0.2,
        }
    )
    down = on_email.model_copy(update={"smtp_port": free_port()})  # nobody listens there
    opened, _ = events_for_ticket()
    dead = Capture(down.amqp_url, f"{down.amqp_prefix}notifier.urgent.dead")
    service = run_notifier(down)
    try:
        publish(down.amqp_url, down.amqp_prefix, opened)
        [letter] = dead.take(1)
        wait(lambda: any(TID in r.json()["text"] for r in team.requests), timeout=10)
    finally:
        service.stop()

    assert letter.content_type == NOTIFICATION_TYPE
    assert letter.headers["x-error-reason"] == "undeliverable"
    assert letter.headers["x-error"].startswith("kim by email: ")
    assert letter.headers["x-notification-key"] == KIM_BY_EMAIL
    assert letter.headers["x-original-exchange"] == ""
    assert letter.headers["x-original-routing-key"] == f"{down.amqp_prefix}notifier.urgent"
    assert json.loads(letter.body)["notification"]["channel"] == "email"
    failed = [r.json() for r in events.take(1, settle=0.5) if r.routing_key == "escalation.failed"]
    [given_up] = [f["data"] for f in failed]
    assert given_up["notification_key"] == KIM_BY_EMAIL
    assert given_up["attempts"] > 1  # retried in rounds for the budget, then given up
    assert "kim by email" in given_up["error"]
    # The team channel is told that kim could not be reached about this ticket.
    [notice] = [r.json()["text"] for r in team.requests if TID in r.json()["text"]]
    assert "Could not reach anyone on call" in notice
    return on_email, team, letter


def routed(events: Capture, routing_key: str, timeout: float = 10) -> list[dict]:  # type: ignore[type-arg]
    """The data of every `routing_key` event captured, once there is one (or the timeout)."""

    def found() -> list[dict]:  # type: ignore[type-arg]
        return [r.json()["data"] for r in events.drain() if r.routing_key == routing_key]

    wait(lambda: bool(found()), timeout)
    return found()


def replay(settings: NotifierSettings, letter: Received) -> None:
    """The dead letter published back where its headers say, as an operator would."""
    conn = pika.BlockingConnection(pika_parameters(settings.amqp_url))
    try:
        ch = conn.channel()
        ch.confirm_delivery()
        ch.basic_publish(
            letter.headers["x-original-exchange"],
            letter.headers["x-original-routing-key"],
            letter.body,
            pika.BasicProperties(
                message_id=letter.message_id,
                content_type=letter.content_type,
                headers=letter.headers,
                delivery_mode=2,
            ),
            mandatory=True,
        )
    finally:
        conn.close()


def test_smtp_down_fails_dead_letters_and_a_replay_delivers_once_it_is_back(  # type: ignore[no-untyped-def]
    notifier_env,
    serve,  # noqa: F811
    events: Capture,
) -> None:
    settings, kim, _, (inbox, _) = notifier_env
    on_email, _team, letter = give_up_on_email(settings, serve, events)
    assert inbox.messages == [] and kim.requests == []

    # SMTP is back: replay the dead letter where it came from; replayed twice, it is
    # still one mail.
    events.received.clear()
    service = run_notifier(on_email)
    try:
        replay(on_email, letter)
        wait(lambda: len(inbox.messages) >= 1)
        replay(on_email, letter)
        time.sleep(1.5)
    finally:
        service.stop()
    assert [envelope.rcpt_tos for envelope, _ in inbox.messages] == [["kim@support.example"]]
    [(_, mail)] = inbox.messages
    assert mail["X-Premium-Support-Key"] == KIM_BY_EMAIL
    sent = [e for e in routed(events, "escalation.sent") if e["person"] == "kim"]
    assert [(e["notification_key"], e["channel"]) for e in sent] == [(KIM_BY_EMAIL, "email")]


def test_a_dead_letter_replayed_after_the_ticket_was_resolved_is_cancelled(  # type: ignore[no-untyped-def]
    notifier_env,
    serve,  # noqa: F811
    events: Capture,
) -> None:
    settings, _, _, (inbox, _) = notifier_env
    on_email, _team, letter = give_up_on_email(settings, serve, events)

    events.received.clear()
    resolved = make_event(
        TicketResolved(ticket_id=TID, at=NOW + timedelta(minutes=5)),
        service="intake",
        subject=TID,
        cause="resolved",
        correlation_id="c-1",
        now=NOW + timedelta(minutes=5),
    )
    ledger = Ledger(engine_for(on_email.notifier_store_url))
    service = run_notifier(on_email)
    try:
        publish(on_email.amqp_url, on_email.amqp_prefix, resolved)
        wait(lambda: getattr(ledger.notes(TID), "closed", None) == "resolved")
        replay(on_email, letter)
        cancelled = routed(events, "escalation.cancelled")
        time.sleep(1.0)  # a mail would have gone out by now
    finally:
        service.stop()
        ledger.engine.dispose()
    assert [c["notification_key"] for c in cancelled] == [KIM_BY_EMAIL]
    assert "the ticket is closed (resolved)" in cancelled[0]["why"]
    assert inbox.messages == []
    assert [e for e in routed(events, "escalation.sent") if e["person"] == "kim"] == []
