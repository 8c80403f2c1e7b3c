"""`sla whatif`'s pure replay, on hand-built event lists: the real deadline and escalation
code under a simulated clock, current and proposed files side by side."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from schemas.events import (
    CloudEvent,
    EscalationAcknowledged,
    EventData,
    TicketExempted,
    TicketOpened,
    TicketReclassified,
    TicketResolved,
    TicketResponded,
    make_event,
)
from schemas.inbound import Severity
from schemas.ticket import Submitter, Ticket
from services.notifier.oncall import OnCall, parse_oncall
from services.operator.whatif import simulate
from services.operator.whatif_report import Window, compare
from services.sla_timer.policy import Policy, parse_policy

T0 = datetime(2026, 11, 30, 10, 0, tzinfo=UTC)  # a Monday, after the 09:00 hand-off
A, B = "T-email-00000000000000aa", "T-email-00000000000000bb"


# {version} and {budget} to fill in; only a Super Admin's business-critical email has a clock
POLICY = """
version: "{version}"
calendars:
  always: {{always_open: true, timezone: UTC}}
rules:
  - name: email-critical
    match: {{channel: email, role: super_admin, severity: business_critical}}
    budget: {budget}
    calendar: always
    kind: guaranteed
    warn: {{before: 10m}}
  - name: anything-else
    match: {{}}
    clock: false
"""
# {primary}: who is on level 1 (kim or lars, both with a pager); mira is level 2
ONCALL = """
people:
  - {{id: kim, name: Kim, email: kim@x.example,
     paging_webhook: {{url: "https://p.example/e", routing_key: K}}}}
  - {{id: lars, name: Lars, email: lars@x.example,
     paging_webhook: {{url: "https://p.example/e", routing_key: L}}}}
  - {{id: mira, name: Mira, email: mira@x.example}}
schedules:
  primary:
    {{timezone: UTC, rotation: [{primary}], handoff: {{weekday: mon, hour: 9}}, start: 2026-01-05}}
escalation:
  - {{level: 1, schedules: [primary]}}
  - {{level: 2, people: [mira]}}
team_channel: {{console: true}}
"""


def policy(budget: str, version: str) -> Policy:
    return parse_policy(POLICY.format(version=version, budget=budget))


def oncall(primary: str) -> OnCall:
    return parse_oncall(ONCALL.format(primary=primary))


def ticket(tid: str, severity: Severity = "business_critical", at: datetime = T0) -> Ticket:
    return Ticket(
        ticket_id=tid,
        channel="email",
        portal_id=4411,
        premium=True,
        submitter=Submitter(role="super_admin", user_id="u-19"),
        severity=severity,
        submitter_marked_critical=severity == "business_critical",
        subject="Nobody can log in <b>now</b>",
        created_at=at,
    )


def event(data: EventData, tid: str, at: datetime, cause: str = "x") -> CloudEvent:
    return make_event(data, service="intake", subject=tid, cause=cause, correlation_id="c", now=at)


def opened(tid: str, at: datetime = T0) -> CloudEvent:
    return event(TicketOpened(ticket=ticket(tid, at=at)), tid, at, "opened")


def responded(tid: str, after: timedelta) -> CloudEvent:
    at = T0 + after
    return event(TicketResponded(ticket_id=tid, at=at, agent="sam"), tid, at, "responded")


HOUR, HALF = policy("1h", "current"), policy("30m", "proposed")
KIM, LARS = oncall("kim"), oncall("lars")
WINDOW = Window("test", 0, None, None, None)


def test_a_shorter_budget_turns_met_into_breached_and_pages_at_the_breach() -> None:
    events = [opened(A), responded(A, timedelta(minutes=40))]
    current, proposed = simulate(events, HOUR, KIM), simulate(events, HALF, KIM)
    doc = compare(current, proposed, WINDOW, {})

    counts = doc["metrics"]["first_response"]
    assert counts["tickets"] == {"current": 1, "proposed": 1}
    assert counts["breaches"] == {"current": 0, "proposed": 1}
    assert counts["warnings"] == {"current": 0, "proposed": 1}  # 20 min in: before the reply
    assert counts["met"] == {"current": 1, "proposed": 0}
    assert counts["responded_late"] == {"current": 0, "proposed": 1}
    # opened pages kim; the breach pages kim again and mira (level 2)
    assert counts["pages"] == {"current": 1, "proposed": 3}
    [changed] = doc["changed"]
    assert changed["ticket_id"] == A and changed["change"] == "met -> responded_late"
    assert changed["current"]["due_at"] == (T0 + timedelta(hours=1)).isoformat()
    assert changed["proposed"]["due_at"] == (T0 + timedelta(minutes=30)).isoformat()
    day = T0.date().isoformat()
    assert doc["pages_per_person_per_day"] == {
        "kim": {day: {"current": 1, "proposed": 2}},
        "mira": {day: {"current": 0, "proposed": 1}},
    }


def test_an_unanswered_ticket_breaches_at_its_instant_within_the_horizon() -> None:
    events = [opened(A)]
    until = T0 + timedelta(minutes=45)
    current, proposed = simulate(events, HOUR, KIM, until), simulate(events, HALF, KIM, until)
    assert current.outcomes[(A, "first_response")].outcome == "running"
    assert proposed.outcomes[(A, "first_response")].outcome == "breached"
    # the timeline: opened (1 open), warning at +20m, breach at +30m (still open)
    assert proposed.timeline == [
        (T0, 1, 0),
        (T0 + timedelta(minutes=20), 1, 0),
        (T0 + timedelta(minutes=30), 1, 1),
    ]
    assert [(p.person, p.reason, p.level) for p in proposed.pages] == [
        ("kim", "opened", 1),
        ("kim", "breached", 1),
        ("mira", "breached", 2),
    ]


def test_a_roster_change_moves_the_pages_to_another_person() -> None:
    events = [opened(A), opened(B, T0 + timedelta(hours=2)), responded(A, timedelta(minutes=5))]
    doc = compare(simulate(events, HOUR, KIM), simulate(events, HOUR, LARS), WINDOW, {})
    day = T0.date().isoformat()
    assert doc["pages_per_person_per_day"] == {
        "kim": {day: {"current": 2, "proposed": 0}},
        "lars": {day: {"current": 0, "proposed": 2}},
    }
    assert doc["changed"] == []  # the same policy: no outcome changes
    assert doc["metrics"]["first_response"]["pages"] == {"current": 2, "proposed": 2}


def test_an_acknowledgement_stops_the_reminder_and_repeats_count_once() -> None:
    ack = EscalationAcknowledged(ticket_id=A, at=T0 + timedelta(minutes=1), by="kim")
    events = [opened(A), event(ack, A, T0 + timedelta(minutes=1), "ack"), opened(A)]
    run = simulate(events, HOUR, KIM, T0 + timedelta(minutes=55))
    assert run.warnings == {"first_response": 1}  # sla_timer still warns...
    assert [p.reason for p in run.pages] == ["opened"]  # ...the notifier reminds nobody


def test_an_update_before_its_opened_waits_for_it() -> None:
    early = responded(A, timedelta(minutes=5))
    late_opened = opened(A).model_copy(update={"time": T0 + timedelta(minutes=6)})
    run = simulate([early, late_opened], HALF, KIM)
    assert run.outcomes[(A, "first_response")].outcome == "met"
    assert run.before_window == 0


def test_updates_of_tickets_opened_before_the_window_are_counted_not_replayed() -> None:
    run = simulate([responded(A, timedelta(minutes=5))], HOUR, KIM)
    assert run.outcomes == {} and run.before_window == 1


def test_a_ticket_without_a_clock_is_counted_apart() -> None:
    standard = ticket(B, severity="standard")
    run = simulate([event(TicketOpened(ticket=standard), B, T0)], HOUR, KIM)
    assert run.outcomes == {} and run.without_clock == 1 and run.pages == []


def test_a_reclassification_moves_the_deadline_under_each_policy() -> None:
    down = TicketReclassified(ticket_id=A, at=T0 + timedelta(minutes=5), severity="standard")
    events = [opened(A), event(down, A, T0 + timedelta(minutes=5), "down")]
    run = simulate(events, HALF, KIM, T0 + timedelta(hours=2))
    # the standard severity has no clock in this policy: stopped without a breach
    assert run.outcomes[(A, "first_response")].outcome == "exempted"
    assert run.breaches == {} and [p.reason for p in run.pages] == ["opened"]


def test_an_exemption_stops_the_clock_and_a_breach_then_resolution_stays_breached() -> None:
    exempt = TicketExempted(ticket_id=A, at=T0 + timedelta(minutes=5), reason="asked to wait")
    resolve = TicketResolved(ticket_id=B, at=T0 + timedelta(minutes=50))
    events = [
        opened(A),
        event(exempt, A, T0 + timedelta(minutes=5), "exempt"),
        opened(B),
        event(resolve, B, T0 + timedelta(minutes=50), "resolved"),
    ]
    run = simulate(events, HALF, KIM, T0 + timedelta(hours=2))
    assert run.outcomes[(A, "first_response")].outcome == "exempted"
    assert run.outcomes[(B, "first_response")].outcome == "breached"
    assert run.breaches == {"first_response": 1}
    assert run.timeline[-1] == (T0 + timedelta(minutes=50), 0, 1)  # nothing open at the end
