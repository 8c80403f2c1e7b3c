"""No canonical event makes sla_timer or the notifier raise an unclassified error.

Every event type, with extreme but schema-valid data (timestamps from year 1 to 9999
in any offset, deadlines before their start, huge lateness, long texts), is fed to each
service's batch handler against a real SQLite store: each input ends as a result or as
a classified PermanentError (dead-lettered with a specific reason), never anything
else, and the batch as a whole never raises.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import (
    EVENT_TYPES,
    EscalationAcknowledged,
    EventData,
    SlaBreached,
    SlaMet,
    SlaScheduled,
    SlaWarning,
    TicketExempted,
    TicketOpened,
    TicketPaused,
    TicketReclassified,
    TicketResolved,
    TicketResponded,
    TicketResumed,
    TicketUpdated,
    make_event,
)
from schemas.ticket import Submitter, Ticket
from services.common.store_engine import engine_for
from services.notifier.decisions import Notification
from services.notifier.digest import DigestQueue
from services.notifier.ledger import Ledger
from services.notifier.oncall import parse_oncall
from services.notifier.outcomes import Outcomes
from services.notifier.render import (
    render_chat,
    render_console,
    render_email,
    render_generic,
    render_pagerduty,
)
from services.notifier.retry_plan import SendRetry
from services.notifier.sends import SendQueue
from services.notifier.service import Notifier
from services.runtime.errors import PermanentError
from services.runtime.messages import Inbound, Outgoing
from services.runtime.names import Names
from services.sla_timer.policy import load_policy
from services.sla_timer.service import SlaTimer
from services.sla_timer.store import ClockStore

TID = "T-email-0207b44e3d661cc0"
ONCALL = """\
people:
  - {id: kim, name: Kim, email: kim@support.example, console: true,
     paging_webhook: {url: "https://events.example/v2/enqueue", routing_key: R0KIM}}
  - {id: lars, name: Lars, email: lars@support.example}
schedules:
  primary: {timezone: Europe/Amsterdam, rotation: [kim], handoff: {weekday: mon, hour: 9},
            start: 2024-01-01}
escalation:
  - {level: 1, schedules: [primary]}
  - {level: 2, people: [lars]}
team_channel: {console: true}
"""

zones = st.sampled_from([UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12)), UTC])
EDGES = [
    datetime(9999, 12, 31, 23, 59, tzinfo=UTC),
    datetime(9999, 12, 30, 12, 0, tzinfo=timezone(timedelta(hours=-12))),
    datetime(1, 1, 1, 0, 0, tzinfo=UTC),
    datetime(1, 1, 2, 0, 0, tzinfo=timezone(timedelta(hours=14))),
]
instants = st.one_of(
    st.sampled_from(EDGES),
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=zones),
)
severities = st.sampled_from(["business_critical", "standard"])
texts = st.text(max_size=300)


def ticket(created: datetime, severity: str, premium: bool, role: str, channel: str) -> Ticket:
    return Ticket.model_validate(
        {
            "ticket_id": f"T-{channel}-0207b44e3d661cc0",
            "channel": channel,
            "portal_id": 4411,
            "account_name": "Acme Corp",
            "premium": premium,
            "timezone": "Europe/Amsterdam",
            "submitter": Submitter(role=role, user_id="u-19", email="ana@acme.example"),  # type: ignore[arg-type]
            "severity": severity,
            "submitter_marked_critical": severity == "business_critical",
            "subject": "Login outage",
            "text": "Nobody can log in",
            "created_at": created,
            "call_kind": "callback_request" if channel == "phone" else None,
        }
    )


def sla_fields(draw: Any) -> dict[str, Any]:
    return {
        "ticket_id": TID,
        "severity": draw(severities),
        "guaranteed": draw(st.booleans()),
        "policy_rule": draw(st.sampled_from(["email-super-admin-business-critical", "x" * 200])),
        "policy_version": draw(st.text(min_size=1, max_size=20)),
        "started_at": draw(instants),
        "due_at": draw(instants),
    }


@st.composite
def event_data(draw: Any) -> EventData:
    kind = draw(st.sampled_from(sorted(EVENT_TYPES)))
    model = EVENT_TYPES[kind][0]
    at = draw(instants)
    if model is TicketOpened:
        channel = draw(st.sampled_from(["email", "chat", "phone"]))
        role = draw(st.sampled_from(["super_admin", "user", "unknown"]))
        t = ticket(at, draw(severities), draw(st.booleans()), role, channel)
        return TicketOpened(ticket=t.model_copy(update={"ticket_id": TID}))
    if model is TicketUpdated:
        return TicketUpdated(ticket_id=TID, channel="email", at=at, text=draw(texts))
    if model is TicketResponded:
        return TicketResponded(ticket_id=TID, at=at, agent=draw(texts))
    if model is TicketReclassified:
        return TicketReclassified(ticket_id=TID, at=at, severity=draw(severities))
    if model is TicketExempted:
        return TicketExempted(ticket_id=TID, at=at, reason=draw(texts))
    if model is TicketResolved:
        return TicketResolved(ticket_id=TID, at=at)
    if model is TicketPaused:
        return TicketPaused(ticket_id=TID, at=at, reason=draw(st.none() | texts))
    if model is TicketResumed:
        return TicketResumed(ticket_id=TID, at=at)
    if model is EscalationAcknowledged:
        return EscalationAcknowledged(ticket_id=TID, at=at, by=draw(st.sampled_from(["kim", "x"])))
    if model in (SlaWarning, SlaBreached):
        extra: dict[str, Any] = {
            "fired_at": at,
            "lateness_ms": draw(st.integers(0, 10**15)),
        }
        if model is SlaWarning:
            extra["warn_at"] = draw(instants)
        return model(**sla_fields(draw), **extra)  # type: ignore[no-any-return]
    if model is SlaScheduled:
        return SlaScheduled(
            **sla_fields(draw), warn_at=draw(st.none() | instants), calendar=draw(texts)
        )
    if model is SlaMet:
        return SlaMet(
            **sla_fields(draw),
            responded_at=at,
            outcome=draw(st.sampled_from(["met", "responded_late"])),
        )
    # escalation.sent / failed / cancelled: the notifier does not bind them, but must
    # still classify one that reaches it
    fields = {
        "ticket_id": TID,
        "reason": "opened",
        "level": 1,
        "person": "kim",
        "channel": "console",
        "notification_key": f"{TID}:opened:1:kim:console",
    }
    extra = {"support.escalation.sent": {"sent_at": at}}.get(kind)
    if extra is None and kind == "support.escalation.failed":
        extra = {"failed_at": at, "attempts": 1, "error": "x"}
    if extra is None:
        extra = {"cancelled_at": at, "why": "x"}
    return model(**fields, **extra)  # type: ignore[no-any-return]


CAUSES = itertools.count()  # ids repeated across examples would be dropped as duplicates


def inbound(data: EventData, n: int) -> Inbound:
    event = make_event(
        data,
        service="test",
        subject=TID,
        cause=f"c{n}-{next(CAUSES)}",
        correlation_id="corr",
        now=datetime.now(UTC),
    )
    out = Outgoing.event(event)
    return Inbound(
        body=out.body,
        routing_key=event.routing_key,
        exchange="support.events",
        content_type=out.content_type,
        message_id=event.id,
    )


def classified(results: list[Any]) -> None:
    for result in results:
        if isinstance(result, BaseException):
            assert isinstance(result, PermanentError), repr(result)
        else:
            assert isinstance(list(result), list)


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("stores")


HYPOTHESIS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@HYPOTHESIS
@given(batch=st.lists(event_data(), min_size=1, max_size=6))
def test_sla_timer_classifies_every_event(store_dir: Path, batch: list[EventData]) -> None:
    # A store of its own per example: the ticket's clock starts from this batch alone.
    store = ClockStore(engine_for(str(store_dir / f"clocks-{next(CAUSES)}.db")))
    store.migrate()
    timer = SlaTimer(store, load_policy())
    classified(timer.handle_batch([inbound(d, i) for i, d in enumerate(batch)]))
    timer.fire()  # whatever was stored can be fired without raising


@HYPOTHESIS
@given(batch=st.lists(event_data(), min_size=1, max_size=6))
def test_notifier_classifies_every_event(store_dir: Path, batch: list[EventData]) -> None:
    ledger = Ledger(engine_for(str(store_dir / f"notifier-{next(CAUSES)}.db")))
    ledger.migrate()
    oncall = parse_oncall(ONCALL)
    sends, digests = SendQueue(ledger.engine), DigestQueue(ledger.engine)
    outcomes = Outcomes(sends, ledger, digests, oncall, Names("t."), SendRetry())
    notifier = Notifier(ledger, sends, outcomes, oncall, digests)
    classified(notifier.handle_batch([inbound(d, i) for i, d in enumerate(batch)]))
    # What a page would say of the ticket now can be rendered for every channel.
    with ledger.engine.connect() as conn:
        notes = ledger.notes_in(conn, [TID]).get(TID)
    if notes is not None:
        page = Notification(
            ticket_id=TID,
            reason="breached",
            level=1,
            person="kim",
            channel="console",
            action="notify",
            kind="page",
        )
        for render in (render_console, render_email, render_chat, render_generic):
            render(page, notes, oncall, datetime.now(UTC))
        paging = page.via("paging_webhook")
        assert render_pagerduty(paging, notes, oncall, datetime.now(UTC))["dedup_key"]
