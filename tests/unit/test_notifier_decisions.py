"""Routing decisions: every trigger, acknowledgements, resolutions, redelivery, notes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.events import (
    TYPE_OF,
    EscalationAcknowledged,
    EventData,
    SlaBreached,
    SlaMet,
    SlaScheduled,
    SlaWarning,
    TicketExempted,
    TicketOpened,
    TicketReclassified,
    TicketResolved,
    make_event,
)
from schemas.inbound import Severity
from schemas.ticket import Submitter, Ticket, TriageHint
from services.notifier.decisions import Notification, decide, decide_event
from services.notifier.digest import digest_due
from services.notifier.notes import TicketNotes, excerpt, note_event, record_pages
from services.notifier.oncall import OnCall, OnCallError, parse_oncall

TID = "T-email-0207b44e3d661cc0"
T0 = datetime(2026, 11, 27, 9, 58, 2, tzinfo=UTC)
NOW = T0 + timedelta(minutes=1)

ONCALL = """\
people:
  - id: kim
    name: Kim
    email: kim@support.example
    chat_webhook: https://chat.example/hooks/kim
    paging_webhook: {url: "https://pager.example/v2/enqueue", routing_key: RK-KIM}
    timezone: Europe/Amsterdam
  - {id: lars, name: Lars, email: lars@support.example, chat_webhook: "https://chat.example/hooks/lars"}
  - id: mira
    name: Mira
    email: mira@support.example
    paging_webhook: {url: "https://pager.example/v2/enqueue", routing_key: RK-MIRA}
    generic_webhook: {url: "https://ops.example/hook", secret_env: HOOK_SECRET}
schedules:
  primary:
    timezone: Europe/Amsterdam
    rotation: [kim]
    handoff: {weekday: mon, hour: 9}
    start: 2026-01-05
  secondary:
    timezone: Europe/Amsterdam
    rotation: [lars]
    handoff: {weekday: mon, hour: 9}
    start: 2026-01-05
escalation:
  - {level: 1, schedules: [primary]}
  - {level: 2, schedules: [secondary], people: [mira]}
team_channel: {chat_webhook: "https://chat.example/hooks/team"}
"""


@pytest.fixture(scope="module")
def oncall() -> OnCall:
    return parse_oncall(ONCALL)


def ticket(severity: Severity = "business_critical", premium: bool = True) -> Ticket:
    return Ticket(
        ticket_id=TID,
        channel="email",
        portal_id=4411,
        account_name="Acme Corp",
        premium=premium,
        timezone="Europe/Amsterdam",
        submitter=Submitter(role="super_admin", user_id="u-19", email="ana@acme.example"),
        severity=severity,
        submitter_marked_critical=severity == "business_critical",
        subject="Login outage",
        text="Nobody on our team can log in since 9:50\n\nPlease help",
        created_at=T0,
        triage_hints=[
            TriageHint(signal="login_outage", points_to="business_critical", phrases=["log in"])
        ],
    )


def sla(kind: type[Any], severity: Severity = "business_critical", guaranteed: bool = True) -> Any:
    due = T0 + timedelta(minutes=30)
    base: dict[str, Any] = {
        "ticket_id": TID,
        "severity": severity,
        "guaranteed": guaranteed,
        "policy_rule": "email-super-admin-business-critical",
        "policy_version": "2026-11-01",
        "started_at": T0,
        "due_at": due,
    }
    if kind is SlaScheduled:
        return SlaScheduled(**base, warn_at=due - timedelta(minutes=10), calendar="always")
    if kind is SlaWarning:
        warn = due - timedelta(minutes=10)
        return SlaWarning(**base, warn_at=warn, fired_at=warn, lateness_ms=0)
    if kind is SlaBreached:
        return SlaBreached(**base, fired_at=due, lateness_ms=0)
    return SlaMet(**base, responded_at=due - timedelta(minutes=1), outcome="met")


ACK = EscalationAcknowledged(ticket_id=TID, at=NOW, by="kim")


def run(
    data: EventData, oncall: OnCall, notes: TicketNotes | None = None
) -> tuple[TicketNotes, list[Notification]]:
    """What the edge does: note the event, decide, remember the pages."""
    notes = note_event(notes, data)
    out = decide(TYPE_OF[type(data)], data, notes, oncall, NOW)
    return record_pages(notes, out), out


def routes(out: list[Notification]) -> set[tuple[int, str, str, str]]:
    return {(n.level, n.person, n.channel, n.action) for n in out}


def test_opened_business_critical_pages_level_one(oncall: OnCall) -> None:
    notes, out = run(TicketOpened(ticket=ticket()), oncall)
    # One page per person, by their first contact method; the others are its fallbacks.
    assert routes(out) == {(1, "kim", "paging_webhook", "trigger")}
    page = next(n for n in out if n.channel == "paging_webhook")
    assert page.methods == ("paging_webhook", "chat_webhook", "email") and page.kind == "page"
    assert page.via("email").channel == "email" and page.via("email").dedup_key is None
    assert page.notification_key == f"{TID}:opened:1:kim:paging_webhook"
    assert page.dedup_key == f"{TID}:opened"
    assert notes.paged_keys == (page.notification_key,)
    assert all(n.reason == "opened" for n in out)


@pytest.mark.parametrize(
    ("severity", "premium"), [("standard", True), ("business_critical", False)]
)
def test_opened_standard_or_without_premium_notifies_nobody(
    oncall: OnCall, severity: Severity, premium: bool
) -> None:
    assert run(TicketOpened(ticket=ticket(severity, premium)), oncall)[1] == []


def test_warning_of_a_guaranteed_clock_reminds_level_one_without_paging(oncall: OnCall) -> None:
    _, out = run(sla(SlaWarning), oncall)
    assert routes(out) == {(1, "kim", "chat_webhook", "notify")}
    assert out[0].fallbacks == ("email",) and out[0].kind == "remind"
    assert {n.reason for n in out} == {"warning"}


def test_warning_of_a_target_notifies_nobody(oncall: OnCall) -> None:
    assert run(sla(SlaWarning, guaranteed=False), oncall)[1] == []


def test_acknowledged_stops_reminders(oncall: OnCall) -> None:
    notes, _ = run(TicketOpened(ticket=ticket()), oncall)
    notes, acks = run(ACK, oncall, notes)
    assert routes(acks) == {(1, "kim", "paging_webhook", "acknowledge")}
    assert acks[0].reason == "acknowledged.opened"
    assert acks[0].dedup_key == f"{TID}:opened"  # the incident that was triggered
    assert notes.acknowledged and notes.acknowledged_by == "kim"
    assert run(sla(SlaWarning), oncall, notes)[1] == []
    # decide also takes the notes from before the acknowledgement was noted
    before = note_event(None, TicketOpened(ticket=ticket()))
    assert decide("support.escalation.acknowledged", ACK, before, oncall, NOW) == []  # no pages
    assert decide("support.sla.warning", sla(SlaWarning), notes, oncall, NOW) == []


def test_breached_business_critical_pages_levels_one_and_two(oncall: OnCall) -> None:
    notes, out = run(sla(SlaBreached), oncall)
    assert routes(out) == {
        (1, "kim", "paging_webhook", "trigger"),
        (2, "lars", "chat_webhook", "notify"),  # no paging webhook: the next method
        (2, "mira", "paging_webhook", "trigger"),
    }
    mira = next(n for n in out if n.person == "mira")
    assert mira.fallbacks == ("email", "generic_webhook")
    assert {p.person for p in notes.pages} == {"kim", "mira"}
    assert all(n.dedup_key == f"{TID}:breached" for n in out if n.channel == "paging_webhook")


def test_breach_still_pages_after_an_acknowledgement(oncall: OnCall) -> None:
    notes, _ = run(ACK, oncall)
    assert any(n.action == "trigger" for n in run(sla(SlaBreached), oncall, notes)[1])


def test_breached_standard_of_a_guaranteed_clock_notifies_team_and_level_one(
    oncall: OnCall,
) -> None:
    _, out = run(sla(SlaBreached, "standard"), oncall)
    assert routes(out) == {
        (1, "kim", "email", "notify"),  # a notice: email first, chat as its fallback
        (0, "team", "team_digest", "notify"),
    }
    assert f"{TID}:breached:0:team:team_digest" in {n.notification_key for n in out}


@pytest.mark.parametrize("severity", ["business_critical", "standard"])
def test_missed_target_goes_to_the_team_digest_and_never_pages(
    oncall: OnCall, severity: Severity
) -> None:
    notes, out = run(sla(SlaBreached, severity, guaranteed=False), oncall)
    assert [(n.reason, n.person, n.channel) for n in out] == [("missed", "team", "team_digest")]
    assert notes.pages == ()
    # even when the file asks to tell level 1 about missed targets: a notice, not a page
    custom = parse_oncall(ONCALL + "notify:\n  missed_target: {levels: [1, 2], team: true}\n")
    _, out = run(sla(SlaBreached, severity, guaranteed=False), custom)
    assert out and not [n for n in out if n.channel == "paging_webhook" or n.action == "trigger"]


def test_met_or_resolved_after_a_page_resolves_it(oncall: OnCall) -> None:
    notes, _ = run(TicketOpened(ticket=ticket()), oncall)
    notes, _ = run(sla(SlaBreached), oncall, notes)
    met_notes, resolves = run(sla(SlaMet), oncall, notes)
    assert routes(resolves) == {
        (1, "kim", "paging_webhook", "resolve"),
        (2, "mira", "paging_webhook", "resolve"),
    }
    assert sorted(n.notification_key for n in resolves) == [
        f"{TID}:resolved.breached:1:kim:paging_webhook",
        f"{TID}:resolved.breached:2:mira:paging_webhook",
        f"{TID}:resolved.opened:1:kim:paging_webhook",
    ]
    assert met_notes.closed == "met"
    # ticket.resolved later gives the same keys: the ledger sends each resolve once
    again = run(TicketResolved(ticket_id=TID, at=NOW), oncall, met_notes)[1]
    assert {n.notification_key for n in again} == {n.notification_key for n in resolves}


def test_met_or_resolved_without_a_page_sends_nothing(oncall: OnCall) -> None:
    assert run(sla(SlaMet), oncall)[1] == []
    assert run(TicketResolved(ticket_id=TID, at=NOW), oncall)[1] == []


@pytest.mark.parametrize(
    "closing",
    [
        sla(SlaMet),
        TicketResolved(ticket_id=TID, at=NOW),
        TicketExempted(ticket_id=TID, at=NOW, reason="x"),
    ],
)
def test_closed_ticket_gets_no_new_triggers(oncall: OnCall, closing: EventData) -> None:
    notes, _ = run(closing, oncall)
    assert notes.closed is not None
    assert run(sla(SlaBreached), oncall, notes)[1] == []
    assert run(sla(SlaWarning), oncall, notes)[1] == []


def test_nobody_on_call_goes_to_the_team_digest_at_that_level() -> None:
    oc = parse_oncall(
        ONCALL.replace("start: 2026-01-05\n  secondary", "start: 2027-01-04\n  secondary")
    )
    _, out = run(TicketOpened(ticket=ticket()), oc)
    assert [(n.level, n.person, n.channel) for n in out] == [(1, "team", "team_digest")]


def test_person_on_two_levels_is_told_once_at_the_lowest() -> None:
    oc = parse_oncall(ONCALL.replace("people: [mira]", "people: [kim, mira]"))
    _, out = run(sla(SlaBreached), oc)
    assert {n.level for n in out if n.person == "kim"} == {1}


def test_redelivered_event_routes_the_same_across_a_handoff() -> None:
    oc = parse_oncall(ONCALL.replace("rotation: [kim]", "rotation: [kim, lars]"))
    # 9 Nov 2026 is a Monday; hand-off at 09:00 Amsterdam = 08:00 UTC.
    at = datetime(2026, 11, 9, 7, 59, 59, tzinfo=UTC)
    event = make_event(
        sla(SlaBreached),
        service="sla_timer",
        subject=TID,
        cause="breached",
        correlation_id="c-1",
        now=at,
    )
    first = decide_event(event, None, oc)
    assert first == decide_event(event, None, oc) == decide_event(event, None, oc)
    keys = [n.notification_key for n in first]
    assert len(keys) == len(set(keys))
    # routed at the event's time (lars's last second), not when it is consumed (kim's shift)
    assert {n.person for n in first if n.level == 1} == {"lars"}
    later = decide(event.type, event.parsed(), None, oc, at + timedelta(seconds=2))
    assert {n.person for n in later if n.level == 1} == {"kim"}


def test_event_type_must_match_the_data(oncall: OnCall) -> None:
    with pytest.raises(ValueError, match="does not match"):
        decide("support.sla.warning", sla(SlaBreached), None, oncall, NOW)


def test_notes_follow_the_events() -> None:
    notes = note_event(None, TicketOpened(ticket=ticket()))
    assert notes.due_at is None  # deadlines come from sla_timer's events, not a policy here
    assert notes.summary is not None and notes.summary.subject == "Login outage"
    assert notes.summary.excerpt.startswith("Nobody on our team")
    notes = note_event(notes, sla(SlaScheduled, "standard"))
    assert notes.severity == "standard" and notes.due_at is not None and notes.guaranteed
    notes = note_event(
        notes, TicketReclassified(ticket_id=TID, at=NOW, severity="business_critical")
    )
    assert notes.severity == "business_critical"
    assert note_event(note_event(notes, ACK), ACK) == note_event(notes, ACK)
    with pytest.raises(ValueError, match="notes of"):
        note_event(notes, TicketResolved(ticket_id="T-chat-0123456789abcdef", at=NOW))


def test_record_pages_is_idempotent(oncall: OnCall) -> None:
    notes, out = run(sla(SlaBreached), oncall)
    assert record_pages(notes, out) == notes
    assert len(notes.pages) == 2


def test_excerpt_keeps_the_first_lines() -> None:
    text = "\n\n" + "\n".join(f"line {i}" for i in range(20))
    assert excerpt(text, lines=3) == "line 0\nline 1\nline 2…"
    assert excerpt("x" * 50, chars=10) == "x" * 9 + "…"
    assert excerpt("short") == "short"


# --- digests -------------------------------------------------------------------------------


@given(
    last=st.none() | st.integers(min_value=0, max_value=10_000),
    elapsed=st.integers(min_value=0, max_value=10_000),
    interval=st.integers(min_value=1, max_value=3_600),
)
def test_a_digest_goes_out_at_most_once_per_interval(
    last: int | None, elapsed: int, interval: int
) -> None:
    now = datetime(2026, 11, 27, 10, tzinfo=UTC)
    last_sent = None if last is None else now - timedelta(seconds=elapsed)
    due = digest_due(True, last_sent, now, timedelta(seconds=interval))
    assert due == (last_sent is None or elapsed >= interval)
    assert not digest_due(False, last_sent, now, timedelta(seconds=interval))


@pytest.mark.parametrize(
    ("team", "problem"),
    [
        ("{name: t}", "either chat_webhook or console"),
        (
            '{chat_webhook: "https://chat.example/x", console: true}',
            "either chat_webhook or console",
        ),
    ],
)
def test_a_team_channel_goes_to_exactly_one_place(team: str, problem: str) -> None:
    text = ONCALL.replace(
        'team_channel: {chat_webhook: "https://chat.example/hooks/team"}', f"team_channel: {team}"
    )
    with pytest.raises(OnCallError, match=problem):
        parse_oncall(text)
    console = ONCALL.replace(
        'team_channel: {chat_webhook: "https://chat.example/hooks/team"}',
        "team_channel: {console: true}",
    )
    assert parse_oncall(console).team_channel is not None
