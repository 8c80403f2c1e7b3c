"""Every clock of a ticket (`ticket_clocks`), pure and hand-computed.

The policy below: first response 1 h guaranteed (warning 15 min before), next reply 2 h
target, periodic update every 30 min guaranteed for business-critical tickets only,
resolution 8 h target; all on a 24/7 calendar. START is Friday 2026-11-27 09:58:02 UTC.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest

from schemas.events import (
    EventData,
    SlaBreached,
    SlaMet,
    SlaScheduled,
    TicketExempted,
    TicketPaused,
    TicketReclassified,
    TicketResolved,
    TicketResponded,
    TicketResumed,
    TicketUpdated,
)
from schemas.inbound import Severity
from services.sla_timer.clock import Clock, fire_due
from services.sla_timer.policy import Policy, load_policy, parse_policy
from services.sla_timer.ticket_clocks import Emitted, TicketClocks, apply, open_ticket
from tests.unit.test_sla_clock import START, TID, ticket

POLICY_TEXT = """
version: metrics-1
calendars:
  always: {always_open: true, timezone: UTC}
rules:
  - name: not-premium
    metric: all
    match: {premium: false}
    clock: false
  - name: first-response
    budget: 1h
    calendar: always
    kind: guaranteed
    warn: {before: 15m}
  - name: next-reply
    metric: next_reply
    budget: 2h
    calendar: always
    kind: target
    PAUSE_NEXT_REPLY
  - name: updates-business-critical
    metric: periodic_update
    match: {severity: business_critical}
    budget: 30m
    calendar: always
    kind: guaranteed
  - name: resolution
    metric: resolution
    budget: 8h
    calendar: always
    kind: target
    RESUME_RESOLUTION
"""


def policy(pause_next_reply: bool = True, resume_on_reply: bool = True) -> Policy:
    text = POLICY_TEXT.replace("PAUSE_NEXT_REPLY", "" if pause_next_reply else "pause: false")
    text = text.replace("RESUME_RESOLUTION", "" if resume_on_reply else "resume_on_reply: false")
    return parse_policy(text)


POLICY = policy()


def at(minutes: float) -> datetime:
    return START + timedelta(minutes=minutes)


def opened(severity: Severity = "standard", p: Policy = POLICY) -> tuple[TicketClocks, Emitted]:
    return open_ticket(ticket(severity=severity), p, "corr-1")


def step(clocks: TicketClocks, data: EventData, p: Policy = POLICY) -> tuple[TicketClocks, Emitted]:
    return apply(clocks, data, p, lambda c: p.calendars[c.calendar])


def kinds(emitted: Emitted) -> list[tuple[str, str, int]]:
    return [(type(d).__name__, d.metric, d.round) for _, d, _ in emitted]  # type: ignore[attr-defined]


def responded(minutes: float) -> TicketResponded:
    return TicketResponded(ticket_id=TID, at=at(minutes), agent="ana")


def follow_up(minutes: float) -> TicketUpdated:
    return TicketUpdated(ticket_id=TID, channel="email", at=at(minutes), text="any news?")


def test_opening_starts_first_response_and_resolution_and_leaves_the_rounds_idle() -> None:
    clocks, emitted = opened()
    assert sorted(clocks) == ["first_response", "next_reply", "resolution"]  # standard
    assert kinds(emitted) == [
        ("SlaScheduled", "first_response", 1),
        ("SlaScheduled", "resolution", 1),
    ]
    assert (clocks["first_response"].due_at, clocks["resolution"].due_at) == (at(60), at(480))
    assert clocks["next_reply"].state == "idle" and clocks["next_reply"].next_fire() is None
    # A business-critical ticket also gets the periodic-update clock, idle until a reply.
    bc, _ = opened("business_critical")
    assert bc["periodic_update"].state == "idle"
    # Not premium: no clock of any metric (`metric: all`).
    none, _ = open_ticket(ticket(premium=False), POLICY, "corr-1")
    assert none == {}


def test_a_policy_without_metrics_gives_first_response_only() -> None:
    clocks, emitted = open_ticket(ticket(), load_policy(None), "corr-1")
    assert list(clocks) == ["first_response"] and len(emitted) == 1
    data = emitted[0][1]
    assert isinstance(data, SlaScheduled) and data.metric == "first_response"


def test_next_reply_rounds_start_at_a_follow_up_after_a_reply_and_stop_at_the_next() -> None:
    clocks, _ = opened()
    # A follow-up before any agent reply: first response covers it, no next-reply round.
    clocks, emitted = step(clocks, follow_up(5))
    assert emitted == [] and clocks["next_reply"].state == "idle"
    clocks, emitted = step(clocks, responded(20))
    assert kinds(emitted) == [("SlaMet", "first_response", 1)]
    clocks, emitted = step(clocks, follow_up(60))
    assert kinds(emitted) == [("SlaScheduled", "next_reply", 1)]
    assert (clocks["next_reply"].started_at, clocks["next_reply"].due_at) == (at(60), at(180))
    # A second follow-up while the round runs: the oldest unanswered one counts.
    again, emitted = step(clocks, follow_up(90))
    assert emitted == [] and again == clocks
    clocks, emitted = step(clocks, responded(150))
    assert kinds(emitted) == [("SlaMet", "next_reply", 1)]
    met = emitted[0][1]
    assert isinstance(met, SlaMet) and met.outcome == "met"
    clocks, emitted = step(clocks, follow_up(200))
    assert kinds(emitted) == [("SlaScheduled", "next_reply", 2)]
    assert clocks["next_reply"].due_at == at(320)
    # Round 2 runs out: its breach names the metric and the round.
    fired, events = fire_due(clocks["next_reply"], at(321))
    assert [(type(d).__name__, d.metric, d.round) for d, _ in events] == [  # type: ignore[attr-defined]
        ("SlaBreached", "next_reply", 2)
    ]
    assert fired.state == "breached"


def test_each_round_and_metric_has_event_ids_of_its_own_and_first_response_keeps_its_own() -> None:
    clocks, emitted = opened()
    causes = [cause for _, _, cause in emitted]
    assert causes[0].startswith("scheduled:opened:")  # as before there were metrics
    assert causes[1].startswith("resolution:1:scheduled:opened:")
    clocks, _ = step(clocks, responded(20))
    clocks, one = step(clocks, follow_up(60))
    clocks, met = step(clocks, responded(70))
    clocks, two = step(clocks, follow_up(80))
    all_causes = [c for e in (emitted, one, met, two) for _, _, c in e]
    assert len(set(all_causes)) == len(all_causes)
    assert met[0][2] == "next_reply:1:met"


def test_periodic_updates_run_from_each_agent_reply_to_the_next() -> None:
    clocks, _ = opened("business_critical")
    clocks, emitted = step(clocks, responded(10))
    assert kinds(emitted) == [
        ("SlaMet", "first_response", 1),
        ("SlaScheduled", "periodic_update", 1),
    ]
    assert clocks["periodic_update"].due_at == at(40)
    clocks, emitted = step(clocks, responded(30))  # in time: met, round 2 from 30
    assert kinds(emitted) == [
        ("SlaMet", "periodic_update", 1),
        ("SlaScheduled", "periodic_update", 2),
    ]
    assert clocks["periodic_update"].due_at == at(60)
    breached, events = fire_due(clocks["periodic_update"], at(61))
    assert isinstance(events[0][0], SlaBreached) and breached.state == "breached"
    clocks["periodic_update"] = breached
    clocks, emitted = step(clocks, responded(75))  # late, then round 3 from 75
    late = emitted[0][1]
    assert isinstance(late, SlaMet) and late.outcome == "responded_late" and late.round == 2
    assert clocks["periodic_update"].round == 3 and clocks["periodic_update"].due_at == at(105)


def test_resolution_meets_the_resolution_clock_and_ends_every_round() -> None:
    clocks, _ = opened("business_critical")
    clocks, _ = step(clocks, responded(10))
    clocks, _ = step(clocks, follow_up(20))
    clocks, emitted = step(clocks, TicketResolved(ticket_id=TID, at=at(100)))
    assert kinds(emitted) == [("SlaMet", "resolution", 1)]
    assert {m: c.state for m, c in clocks.items()} == {
        "first_response": "met",
        "next_reply": "resolved",  # its round was running
        "periodic_update": "resolved",
        "resolution": "met",
    }
    assert all(c.next_fire() is None for c in clocks.values())
    # chatwoot#10178: a follow-up on the resolved ticket starts no next-reply round.
    after, emitted = step(clocks, follow_up(120))
    assert emitted == [] and after == clocks
    # Resolved after the due: late.
    late, _ = opened()
    late, emitted = step(late, TicketResolved(ticket_id=TID, at=at(481)))
    assert [d.outcome for _, d, _ in emitted] == ["responded_late"]  # type: ignore[attr-defined]


def test_exemption_stops_every_clock_without_events() -> None:
    clocks, _ = opened("business_critical")
    clocks, emitted = step(clocks, TicketExempted(ticket_id=TID, at=at(5), reason="spam"))
    assert emitted == [] and {c.state for c in clocks.values()} == {"exempted"}


def test_which_metrics_pause_is_the_rules_and_a_customer_reply_resumes() -> None:
    p = policy(pause_next_reply=False)
    clocks, _ = opened(p=p)
    clocks, _ = step(clocks, responded(10), p)
    clocks, _ = step(clocks, follow_up(20), p)  # next reply due 140
    clocks, _ = step(clocks, TicketPaused(ticket_id=TID, at=at(30)), p)
    assert clocks["resolution"].paused and not clocks["next_reply"].paused
    assert not clocks["first_response"].paused  # a first response already given
    # The customer answers at 90: resolution resumes by itself, 60 minutes given back;
    # the running next-reply round does not restart.
    clocks, emitted = step(clocks, follow_up(90), p)
    assert kinds(emitted) == [("SlaScheduled", "resolution", 1)]
    assert clocks["resolution"].due_at == at(480 + 60) and not clocks["resolution"].paused
    assert clocks["next_reply"].due_at == at(140)


def test_a_rule_can_keep_the_clock_paused_until_the_helpdesk_resumes() -> None:
    p = policy(resume_on_reply=False)
    clocks, _ = opened(p=p)
    clocks, _ = step(clocks, TicketPaused(ticket_id=TID, at=at(30)), p)
    clocks, emitted = step(clocks, follow_up(60), p)
    assert clocks["resolution"].paused  # first response resumed, its rule says so
    assert kinds(emitted) == [("SlaScheduled", "first_response", 1)]
    assert clocks["first_response"].due_at == at(90)
    clocks, emitted = step(clocks, TicketResumed(ticket_id=TID, at=at(100)), p)
    assert clocks["resolution"].due_at == at(550)
    assert ("SlaScheduled", "resolution", 1) in kinds(emitted)


def test_reclassified_to_business_critical_after_a_reply_starts_periodic_updates() -> None:
    clocks, _ = opened("standard")
    clocks, _ = step(clocks, responded(10))
    assert "periodic_update" not in clocks
    clocks, emitted = step(
        clocks, TicketReclassified(ticket_id=TID, at=at(50), severity="business_critical")
    )
    assert ("SlaScheduled", "periodic_update", 1) in kinds(emitted)
    assert clocks["periodic_update"].due_at == at(80)
    # The first response, met already, keeps the severity it was met under.
    assert {m: c.severity for m, c in clocks.items()} == {
        "first_response": "standard",
        "next_reply": "business_critical",
        "periodic_update": "business_critical",
        "resolution": "business_critical",
    }
    # Back to standard: periodic updates no longer apply; the round in progress stops.
    clocks, _ = step(clocks, TicketReclassified(ticket_id=TID, at=at(60), severity="standard"))
    assert clocks["periodic_update"].state == "exempted"


@pytest.mark.parametrize("metric", ["first_response", "resolution"])
def test_a_running_clock_of_any_metric_moves_with_a_reclassification(metric: str) -> None:
    clocks, _ = opened("standard")
    before = clocks[metric].due_at  # type: ignore[index]
    clocks, emitted = step(
        clocks, TicketReclassified(ticket_id=TID, at=at(5), severity="business_critical")
    )
    assert clocks[metric].due_at == before  # type: ignore[index]  # same budgets here
    assert clocks[metric].severity == "business_critical"  # type: ignore[index]
    assert ("SlaScheduled", metric, 1) in kinds(emitted)


def test_an_sla_event_and_a_clock_from_before_metrics_read_as_first_responses() -> None:
    old_event = {
        "ticket_id": TID,
        "severity": "business_critical",
        "guaranteed": True,
        "policy_rule": "email-super-admin-business-critical",
        "policy_version": "2026-11-01",
        "started_at": START.isoformat(),
        "due_at": at(30).isoformat(),
        "fired_at": at(31).isoformat(),
        "lateness_ms": 60000,
    }
    breach = SlaBreached.model_validate(old_event)
    assert (breach.metric, breach.round) == ("first_response", 1)
    clocks, _ = opened("business_critical", load_policy(None))
    old_row = clocks["first_response"].model_dump(mode="json")
    for new_field in ("metric", "round", "pause_on_wait", "resume_on_reply", "opened_at"):
        old_row.pop(new_field)
    old_row.pop("replied"), old_row.pop("ticket_closed")
    old = Clock.model_validate(old_row)
    assert (old.metric, old.key, old.cause("met")) == ("first_response", TID, "met")
    # An agent reply stops it as before; no other metric appears from an old row.
    after, emitted = step({"first_response": old}, responded(5), load_policy(None))
    assert list(after) == ["first_response"] and kinds(emitted) == [("SlaMet", "first_response", 1)]


def test_a_reclassification_after_the_ticket_closed_starts_no_clock() -> None:
    clocks, _ = opened("standard")
    clocks, _ = step(clocks, responded(10))
    clocks, _ = step(clocks, TicketResolved(ticket_id=TID, at=at(20)))
    after, emitted = step(
        clocks, TicketReclassified(ticket_id=TID, at=at(30), severity="business_critical")
    )
    assert "periodic_update" not in after and emitted == []
    assert all(c.next_fire() is None for c in after.values())


def test_a_round_started_while_waiting_on_the_customer_starts_paused() -> None:
    clocks, _ = opened("business_critical")
    clocks, _ = step(clocks, responded(10))  # periodic updates due 40
    clocks, _ = step(clocks, TicketPaused(ticket_id=TID, at=at(11)))
    clocks, emitted = step(clocks, responded(20))  # the agent nudges; still waiting
    update = clocks["periodic_update"]
    assert (update.round, update.paused, update.next_fire()) == (2, True, None)
    assert ("SlaMet", "periodic_update", 1) in kinds(emitted)
    # The customer answers at 50: the round resumes from 50, due 80.
    clocks, _ = step(clocks, follow_up(50))
    assert not clocks["periodic_update"].paused
    assert clocks["periodic_update"].due_at == at(80)


def test_a_metric_taken_away_by_a_reclassification_comes_back_with_the_next_one() -> None:
    clocks, _ = opened("business_critical")
    clocks, _ = step(clocks, responded(10))  # periodic updates round 1, due 40
    clocks, _ = step(clocks, TicketReclassified(ticket_id=TID, at=at(15), severity="standard"))
    assert clocks["periodic_update"].state == "exempted"  # no rule for standard
    clocks, emitted = step(
        clocks, TicketReclassified(ticket_id=TID, at=at(20), severity="business_critical")
    )
    update = clocks["periodic_update"]
    assert (update.state, update.round, update.due_at) == ("running", 2, at(50))
    assert ("SlaScheduled", "periodic_update", 2) in kinds(emitted)
    # ... and it goes on with the next agent reply.
    clocks, emitted = step(clocks, responded(30))
    assert kinds(emitted) == [
        ("SlaMet", "periodic_update", 2),
        ("SlaScheduled", "periodic_update", 3),
    ]
    # The ticket's own exemption is final: a reclassification then starts nothing.
    ended, _ = step(clocks, TicketExempted(ticket_id=TID, at=at(40), reason="duplicate"))
    again, emitted = step(ended, TicketReclassified(ticket_id=TID, at=at(50), severity="standard"))
    assert emitted == [] and again == ended


def test_first_response_events_are_written_as_before_metrics_for_older_consumers() -> None:
    # Older consumers' models forbid unknown fields: a first_response event carries
    # exactly the fields it had before metrics; the other metrics' carry both.
    _, emitted = opened("business_critical")
    for _, data, _ in emitted:
        body = json.loads(data.model_dump_json())
        new = {"metric", "round"}
        if data.metric == "first_response":  # type: ignore[attr-defined]
            assert set(body) == set(type(data).model_fields) - new
        else:
            assert new <= set(body)
        assert type(data).model_validate(body) == data
