"""One SLA clock, pure: opening per DESIGN.md section 2, firing, responding, reclassifying,
exempting. Hand-built tickets and the packaged default policy; no store, no broker."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from schemas.events import SlaBreached, SlaMet, SlaScheduled, SlaWarning
from schemas.inbound import Severity
from schemas.ticket import CallKind, Channel, Submitter, SubmitterRole, Ticket
from services.sla_timer.clock import Clock, fire_due, open_clock, reclassify, respond, stop
from services.sla_timer.policy import Policy, load_policy

AMS = ZoneInfo("Europe/Amsterdam")
START = datetime(2026, 11, 27, 9, 58, 2, tzinfo=UTC)  # Friday 10:58:02 in Amsterdam
M = timedelta(minutes=1)
TID = "T-email-0123456789abcdef"


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(None)


def ticket(
    channel: Channel = "email",
    role: SubmitterRole = "super_admin",
    severity: Severity = "business_critical",
    call_kind: CallKind | None = None,
    premium: bool = True,
    created_at: datetime = START,
) -> Ticket:
    return Ticket(
        ticket_id=f"T-{channel}-0123456789abcdef",
        channel=channel,
        portal_id=4411,
        premium=premium,
        submitter=Submitter(role=role, user_id="u-19"),
        severity=severity,
        submitter_marked_critical=severity == "business_critical",
        call_kind=call_kind,
        created_at=created_at,
    )


def opened(policy: Policy, **kw: object) -> Clock:
    outcome = open_clock(ticket(**kw), policy, "corr-1")  # type: ignore[arg-type]
    assert outcome is not None
    clock, events = outcome
    assert len(events) == 1
    data, _ = events[0]
    assert isinstance(data, SlaScheduled)
    assert (data.due_at, data.warn_at, data.policy_rule) == (
        clock.due_at,
        clock.warn_at,
        clock.rule,
    )
    return clock


# --- opening: DESIGN.md section 2 -------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "rule", "budget", "warn", "guaranteed"),
    [
        (
            {"severity": "business_critical"},
            "email-super-admin-business-critical",
            30 * M,
            20 * M,
            True,
        ),
        ({"severity": "standard"}, "email-super-admin-standard", 60 * M, 45 * M, True),
        (
            {"channel": "phone", "role": "unknown", "call_kind": "callback_request"},
            "phone-callback",
            5 * M,
            3 * M,
            False,
        ),
        ({"channel": "chat", "severity": "standard"}, "chat", 5 * M, 3 * M, False),
    ],
)
def test_open_clock_24_7_cases(
    policy: Policy,
    kw: dict[str, object],
    rule: str,
    budget: timedelta,
    warn: timedelta,
    guaranteed: bool,
) -> None:
    clock = opened(policy, **kw)
    assert clock.rule == rule
    assert clock.guaranteed is guaranteed
    assert clock.calendar == "always"
    assert clock.policy_version == policy.version
    assert clock.started_at == START
    assert clock.due_at == START + budget
    assert clock.warn_at == START + warn
    assert clock.state == "running" and not clock.warned
    assert clock.correlation_id == "corr-1"


def test_open_clock_not_a_super_admin_gets_one_business_day(policy: Policy) -> None:
    created = datetime(2026, 11, 27, 16, 0, tzinfo=AMS)  # Friday 16:00
    clock = opened(policy, role="user", severity="standard", created_at=created)
    assert clock.rule == "not-super-admin"
    assert not clock.guaranteed
    assert clock.calendar == "support-hours"
    assert clock.due_at == datetime(2026, 11, 30, 16, 0, tzinfo=AMS)  # Monday, same time
    assert clock.warn_at == datetime(2026, 11, 30, 15, 0, tzinfo=AMS)
    assert clock.due_at.tzinfo == UTC


def test_open_clock_not_premium_has_no_clock(policy: Policy) -> None:
    assert open_clock(ticket(premium=False), policy, "corr-1") is None


def test_clock_starts_at_create_time_even_when_seen_late(policy: Policy) -> None:
    # a ticket created long ago: its deadlines are already in the past, firing decides
    clock = opened(policy, created_at=START - timedelta(hours=2))
    assert clock.due_at == START - timedelta(hours=1, minutes=30)


# --- firing -------------------------------------------------------------------------------


def test_fire_before_warn_does_nothing(policy: Policy) -> None:
    clock = opened(policy)
    assert fire_due(clock, START + 19 * M) == (clock, [])


def test_fire_at_warn_sends_the_warning_only(policy: Policy) -> None:
    clock = opened(policy)
    assert clock.warn_at is not None
    fired, events = fire_due(clock, clock.warn_at)
    assert [type(e) for e, _ in events] == [SlaWarning]
    warning = events[0][0]
    assert isinstance(warning, SlaWarning)
    assert warning.lateness_ms == 0 and warning.fired_at == clock.warn_at
    assert fired.warned and fired.state == "running"
    assert fired.next_fire() == clock.due_at


def test_fire_past_due_sends_warning_then_breach_with_lateness(policy: Policy) -> None:
    clock = opened(policy)
    now = clock.due_at + timedelta(seconds=90)
    fired, events = fire_due(clock, now)
    assert [type(e) for e, _ in events] == [SlaWarning, SlaBreached]
    warning, breach = events[0][0], events[1][0]
    assert isinstance(warning, SlaWarning) and isinstance(breach, SlaBreached)
    assert warning.lateness_ms == (10 * 60 + 90) * 1000
    assert breach.lateness_ms == 90_000
    assert breach.due_at == clock.due_at and breach.fired_at == now
    assert fired.state == "breached" and fired.breached_at == now and fired.warned
    causes = [cause for _, cause in events]
    assert len(set(causes)) == 2


def test_fire_twice_sends_nothing_more(policy: Policy) -> None:
    clock = opened(policy)
    now = clock.due_at + M
    fired, _ = fire_due(clock, now)
    assert fire_due(fired, now + M) == (fired, [])
    warned, _ = fire_due(clock, START + 25 * M)
    assert fire_due(warned, START + 26 * M) == (warned, [])


def test_next_fire_transitions(policy: Policy) -> None:
    clock = opened(policy)
    assert clock.next_fire() == clock.warn_at
    warned, _ = fire_due(clock, START + 20 * M)
    assert warned.next_fire() == clock.due_at
    breached, _ = fire_due(warned, START + 30 * M)
    assert breached.next_fire() is None
    met, _ = respond(clock, START + M)
    assert met.next_fire() is None


# --- stopping -----------------------------------------------------------------------------


def test_respond_before_due_is_met(policy: Policy) -> None:
    clock = opened(policy)
    at = START + 29 * M
    stopped, events = respond(clock, at)
    assert stopped.state == "met" and stopped.stopped_at == at
    assert len(events) == 1
    met = events[0][0]
    assert isinstance(met, SlaMet) and met.outcome == "met" and met.responded_at == at
    assert fire_due(stopped, START + 60 * M) == (stopped, [])
    assert respond(stopped, START + 40 * M) == (stopped, [])  # only the first response


def test_respond_exactly_at_due_is_met(policy: Policy) -> None:
    clock = opened(policy)
    stopped, _ = respond(clock, clock.due_at)
    assert stopped.state == "met"


def test_respond_after_breach_is_responded_late(policy: Policy) -> None:
    clock = opened(policy)
    breached, _ = fire_due(clock, START + 31 * M)
    stopped, events = respond(breached, START + 40 * M)
    assert stopped.state == "responded_late"
    met = events[0][0]
    assert isinstance(met, SlaMet) and met.outcome == "responded_late"
    assert fire_due(stopped, START + 50 * M) == (stopped, [])


def test_stop_exempted_never_breaches(policy: Policy) -> None:
    clock = opened(policy)
    exempted, events = stop(clock, "exempted", START + 5 * M)
    assert events == [] and exempted.state == "exempted"
    assert exempted.stopped_at == START + 5 * M
    assert exempted.next_fire() is None
    assert fire_due(exempted, START + 2 * 60 * M) == (exempted, [])
    assert respond(exempted, START + 2 * 60 * M) == (exempted, [])


# --- reclassification -----------------------------------------------------------------------


def test_reclassify_recomputes_from_the_original_start(policy: Policy) -> None:
    clock = opened(policy, severity="standard")  # 1 h, warn 15 min before
    moved, events = reclassify(clock, "business_critical", policy, at=START + 5 * M)
    assert moved.rule == "email-super-admin-business-critical"
    assert moved.started_at == START
    assert moved.due_at == START + 30 * M and moved.warn_at == START + 20 * M
    assert moved.severity == "business_critical"
    data = events[0][0]
    assert isinstance(data, SlaScheduled) and data.due_at == START + 30 * M


def test_reclassify_never_resends_a_warning(policy: Policy) -> None:
    clock = opened(policy)  # critical: warn at 20 min, due at 30 min
    warned, events = fire_due(clock, START + 21 * M)
    assert [type(e) for e, _ in events] == [SlaWarning]
    moved, _ = reclassify(
        warned, "standard", policy, at=START + 5 * M
    )  # warn at 45 min, due at 60 min
    assert moved.due_at == START + 60 * M and moved.warn_at == START + 45 * M
    assert moved.warned and moved.next_fire() == moved.due_at
    later, events = fire_due(moved, START + 50 * M)
    assert events == []
    _, events = fire_due(later, START + 61 * M)
    assert [type(e) for e, _ in events] == [SlaBreached]


def test_reclassify_after_breach_keeps_the_breach(policy: Policy) -> None:
    clock = opened(policy)
    breached, _ = fire_due(clock, START + 31 * M)
    moved, _ = reclassify(breached, "standard", policy, at=START + 5 * M)
    assert moved.state == "breached" and moved.breached_at == START + 31 * M
    assert fire_due(moved, START + 2 * 60 * M) == (moved, [])


def test_reclassify_same_severity_or_stopped_is_a_no_op(policy: Policy) -> None:
    clock = opened(policy)
    assert reclassify(clock, "business_critical", policy, at=START + 5 * M) == (clock, [])
    met, _ = respond(clock, START + M)
    assert reclassify(met, "standard", policy, at=START + 5 * M) == (met, [])


def test_reclassify_back_and_forth_gives_a_new_scheduled_event(policy: Policy) -> None:
    outcome = open_clock(ticket(), policy, "corr-1")
    assert outcome is not None
    clock, first = outcome
    down, _ = reclassify(clock, "standard", policy, at=START + 5 * M)
    back, again = reclassify(down, "business_critical", policy, at=START + 6 * M)
    assert back.due_at == clock.due_at
    assert again[0][1] != first[0][1]
