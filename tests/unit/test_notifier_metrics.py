"""The notifier tells the SLA metrics apart: a missed next-reply target is a team
notice, each round is told once, a metric's met resolves only its own pages, and a
first response met does not silence the clocks that run after it."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from schemas.events import (
    TYPE_OF,
    EventData,
    Metric,
    SlaBreached,
    SlaMet,
    SlaScheduled,
    TicketExempted,
    TicketOpened,
    TicketResolved,
)
from services.notifier.decisions import Notification, decide
from services.notifier.facts import message_facts
from services.notifier.notes import TicketNotes, note_event, record_pages
from services.notifier.oncall import OnCall, OnCallError, parse_oncall
from tests.unit.test_notifier_decisions import NOW, ONCALL, T0, TID, sla, ticket

PAGING_UPDATES = """
notify:
  metrics:
    periodic_update:
      breached_business_critical: {levels: [1], kind: page}
"""


def metric_event(kind: type[Any], metric: Metric, round_: int = 1, **kw: Any) -> Any:
    base = sla(kind, **kw)
    return base.model_copy(update={"metric": metric, "round": round_})


def run(events: list[EventData], oncall: OnCall) -> tuple[TicketNotes, list[Notification]]:
    """Every event through `decide` in order, pages recorded: the notes and the last
    event's notifications."""
    notes: TicketNotes | None = None
    out: list[Notification] = []
    for data in events:
        out = decide(TYPE_OF[type(data)], data, notes, oncall, NOW)
        notes = record_pages(note_event(notes, data), out)
    assert notes is not None
    return notes, out


@pytest.fixture(scope="module")
def oncall() -> OnCall:
    return parse_oncall(ONCALL)


def opened_and_answered() -> list[EventData]:
    return [TicketOpened(ticket=ticket()), sla(SlaMet)]


def test_a_missed_next_reply_target_after_the_first_response_is_a_team_notice(
    oncall: OnCall,
) -> None:
    missed = metric_event(SlaBreached, "next_reply", 2, guaranteed=False)
    notes, out = run([*opened_and_answered(), missed], oncall)
    assert notes.closed == "met"  # the first response was given ...
    assert [(n.person, n.channel, n.reason) for n in out] == [  # ... the next reply is late
        ("team", "team_digest", "missed_next_reply_2")
    ]
    facts = message_facts(out[0], notes, oncall, NOW)
    assert facts.headline == "Next reply target missed"
    assert facts.deadline_iso == missed.due_at.isoformat()


def test_each_round_is_told_once_and_apart_from_first_response(oncall: OnCall) -> None:
    keys = set()
    for round_ in (1, 2):
        _, out = run(
            [
                *opened_and_answered(),
                metric_event(SlaBreached, "next_reply", round_, guaranteed=False),
            ],
            oncall,
        )
        keys |= {n.notification_key for n in out}
    _, first = run([TicketOpened(ticket=ticket()), sla(SlaBreached, guaranteed=False)], oncall)
    keys |= {n.notification_key for n in first}
    assert len(keys) == 3


def test_by_default_no_other_metric_pages_and_a_file_can_make_one_page(oncall: OnCall) -> None:
    breach = metric_event(SlaBreached, "periodic_update", 3)  # guaranteed, business-critical
    _, quiet = run([*opened_and_answered(), breach], oncall)
    assert {n.kind for n in quiet} == {"notify"} and "paging_webhook" not in {
        n.channel for n in quiet
    }
    paging = parse_oncall(ONCALL + PAGING_UPDATES)
    notes, out = run([*opened_and_answered(), breach], paging)
    assert [(n.person, n.channel, n.reason) for n in out] == [
        ("kim", "paging_webhook", "breached_periodic_update_3")
    ]
    # The next agent update (that round met) resolves that page and only that one.
    met = metric_event(SlaMet, "periodic_update", 3)
    notes = record_pages(notes, out)
    resolved = decide("support.sla.met", met, notes, paging, NOW)
    assert [(n.reason, n.action) for n in resolved] == [
        ("resolved.breached_periodic_update_3", "resolve")
    ]
    other = metric_event(SlaMet, "next_reply", 1)
    assert decide("support.sla.met", other, notes, paging, NOW) == []


def test_a_first_response_met_resolves_its_own_pages_not_another_metrics(oncall: OnCall) -> None:
    paging = parse_oncall(ONCALL + PAGING_UPDATES)
    notes, _ = run([TicketOpened(ticket=ticket())], paging)
    breach = metric_event(SlaBreached, "periodic_update", 1)
    notes = record_pages(
        note_event(notes, breach), decide("support.sla.breached", breach, notes, paging, NOW)
    )
    assert {p.reason for p in notes.pages} == {"opened", "breached_periodic_update_1"}
    resolved = decide("support.sla.met", sla(SlaMet), notes, paging, NOW)
    assert [n.reason for n in resolved] == ["resolved.opened"]
    # The ticket resolved: every page is resolved.
    done = decide(
        "support.ticket.resolved", TicketResolved(ticket_id=TID, at=NOW), notes, paging, NOW
    )
    assert {n.reason for n in done} == {"resolved.opened", "resolved.breached_periodic_update_1"}


def test_a_resolved_ticket_gets_no_metric_triggers(oncall: OnCall) -> None:
    late = metric_event(SlaBreached, "resolution", guaranteed=False)
    _, out = run([*opened_and_answered(), TicketResolved(ticket_id=TID, at=NOW), late], oncall)
    assert out == []


def test_other_metrics_events_leave_the_first_response_facts_alone(oncall: OnCall) -> None:
    scheduled = metric_event(SlaScheduled, "resolution")
    scheduled = scheduled.model_copy(update={"due_at": T0 + timedelta(hours=8)})
    notes, _ = run([TicketOpened(ticket=ticket()), sla(SlaScheduled), scheduled], oncall)
    assert notes.due_at == T0 + timedelta(minutes=30)
    assert notes.metric_due == {"resolution": T0 + timedelta(hours=8)}
    met = metric_event(SlaMet, "next_reply")
    assert note_event(notes, met).closed is None  # a next reply met closes nothing


def test_a_metric_rule_is_checked_against_the_file() -> None:
    bad = ONCALL + "notify:\n  metrics:\n    next_reply:\n      missed_target: {levels: [7]}\n"
    with pytest.raises(OnCallError, match="no escalation level 7"):
        parse_oncall(bad)


def test_a_later_metrics_message_says_the_severity_it_was_reclassified_to(
    oncall: OnCall,
) -> None:
    # Answered as standard, then reclassified: only the other metrics' clocks move, and
    # their events bring the new severity along.
    standard = [TicketOpened(ticket=ticket("standard")), sla(SlaMet, severity="standard")]
    breach = metric_event(SlaBreached, "periodic_update", 1)  # business-critical
    notes, _ = run([*standard, breach], parse_oncall(ONCALL + PAGING_UPDATES))
    assert notes.severity == "business_critical"


def test_an_exemption_after_the_first_response_stops_the_other_metrics_triggers(
    oncall: OnCall,
) -> None:
    late = metric_event(SlaBreached, "next_reply", 1, guaranteed=False)
    exempted = TicketExempted(ticket_id=TID, at=NOW, reason="duplicate")
    notes, out = run([*opened_and_answered(), exempted, late], oncall)
    assert notes.closed == "exempted" and out == []


def test_first_response_triggers_are_not_set_under_metrics() -> None:
    bad = ONCALL + "notify:\n  metrics:\n    first_response:\n      missed_target: {}\n"
    with pytest.raises(OnCallError, match="first_response's triggers are the ones above"):
        parse_oncall(bad)
