"""`sla whatif` with a policy that adds the other metrics: next-reply rounds from the
recorded follow-ups, a resolution clock that a recorded wait on the customer pauses,
each counted per metric beside the current policy's first response only."""

from __future__ import annotations

from datetime import timedelta

from schemas.events import (
    TicketPaused,
    TicketResolved,
    TicketResponded,
    TicketResumed,
    TicketUpdated,
)
from services.operator.whatif import simulate
from services.operator.whatif_report import compare
from services.sla_timer.policy import parse_policy
from tests.unit.test_whatif import HOUR, KIM, T0, WINDOW, A, event, opened, responded

WITH_METRICS = parse_policy(
    """
version: proposed-metrics
calendars:
  always: {always_open: true, timezone: UTC}
rules:
  - name: email-critical
    match: {channel: email, role: super_admin, severity: business_critical}
    budget: 1h
    calendar: always
    kind: guaranteed
    warn: {before: 10m}
  - name: anything-else
    match: {}
    clock: false
  - name: next-reply
    metric: next_reply
    budget: 30m
    calendar: always
    kind: target
  - name: resolution
    metric: resolution
    budget: 4h
    calendar: always
    kind: target
"""
)


def at(minutes: int) -> timedelta:
    return timedelta(minutes=minutes)


def test_a_policy_with_more_metrics_counts_each_beside_the_current_one() -> None:
    follow_up = TicketUpdated(ticket_id=A, channel="email", at=T0 + at(20), text="still down")
    reply = TicketResponded(ticket_id=A, at=T0 + at(80), agent="sam")
    wait = TicketPaused(ticket_id=A, at=T0 + at(100))
    back = TicketResumed(ticket_id=A, at=T0 + at(220))  # 2 h waiting on the customer
    resolved = TicketResolved(ticket_id=A, at=T0 + at(300))  # 5 h in, 3 h of it counted
    events = [
        opened(A),
        responded(A, at(10)),
        event(follow_up, A, T0 + at(20), "follow-up"),
        event(reply, A, T0 + at(80), "reply"),  # 60 min after the follow-up: target missed
        event(wait, A, T0 + at(100), "wait"),
        event(back, A, T0 + at(220), "back"),
        event(resolved, A, T0 + at(300), "resolved"),
    ]
    current, proposed = simulate(events, HOUR, KIM), simulate(events, WITH_METRICS, KIM)
    doc = compare(current, proposed, WINDOW, {})
    metrics = doc["metrics"]
    assert set(metrics) == {"first_response", "next_reply", "resolution"}
    assert metrics["first_response"]["met"] == {"current": 1, "proposed": 1}
    assert metrics["next_reply"]["tickets"] == {"current": 0, "proposed": 1}
    assert metrics["next_reply"]["breaches"] == {"current": 0, "proposed": 1}
    assert metrics["next_reply"]["responded_late"] == {"current": 0, "proposed": 1}
    assert metrics["next_reply"]["pages"] == {"current": 0, "proposed": 0}  # a team notice
    # Resolution: 4 h budget + 2 h paused = due at 6 h; resolved at 5 h: met.
    assert metrics["resolution"]["met"] == {"current": 0, "proposed": 1}
    assert metrics["resolution"]["breaches"] == {"current": 0, "proposed": 0}
    outcome = proposed.outcomes[(A, "resolution")]
    assert outcome.due_at == T0 + at(360)


def test_a_round_metric_that_never_ran_a_round_is_not_counted() -> None:
    resolved = TicketResolved(ticket_id=A, at=T0 + at(60))
    events = [opened(A), responded(A, at(10)), event(resolved, A, T0 + at(60), "resolved")]
    doc = compare(simulate(events, HOUR, KIM), simulate(events, WITH_METRICS, KIM), WINDOW, {})
    assert "next_reply" not in doc["metrics"]  # no follow-up: no next-reply round
    assert [c["metric"] for c in doc["changed"]] == ["resolution"]  # no clock -> met
