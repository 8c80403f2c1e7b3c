"""Pause and resume on one SLA clock (pure), with the packaged 24/7 default policy.

The default policy's email/super_admin rules: business_critical due 30 min after the
start with a warning at 20 min; standard due at 60 min, warning at 45 min. On a 24/7
calendar paused time is plain minutes, so every expected instant is START + minutes.
Business-hours pause arithmetic is covered in test_sla_pauses.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from rich.console import Console

from schemas.events import SlaScheduled
from services.sla_timer.clock import (
    Clock,
    fire_due,
    open_clock,
    pause,
    reclassify,
    respond,
    resume,
)
from services.sla_timer.operator import (
    Explanation,
    explain_clock,
    migrate_clock,
    render_explanation,
)
from services.sla_timer.policy import Policy, load_policy
from tests.unit.test_sla_clock import AMS, START, opened, ticket

M = timedelta(minutes=1)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy(None)


def at(minutes: int) -> datetime:
    return START + minutes * M


def resumed(policy: Policy, clock: Clock, minutes: int) -> tuple[Clock, list[object]]:
    clock, events = resume(clock, policy.calendars[clock.calendar], at(minutes))
    return clock, [data for data, _ in events]


def test_a_paused_clock_fires_nothing_and_resuming_moves_due_and_warning(policy: Policy) -> None:
    clock = opened(policy)
    assert (clock.due_at, clock.warn_at) == (at(30), at(20))
    paused, events = pause(clock, at(10))
    assert events == [] and paused.paused and paused.next_fire() is None
    assert fire_due(paused, at(60)) == (paused, [])  # nothing fires while waiting
    # Paused 10 -> 25 min: 15 min given back, due 45, warning 35.
    running, sent = resumed(policy, paused, 25)
    assert (running.due_at, running.warn_at, running.paused) == (at(45), at(35), False)
    assert running.next_fire() == at(35)
    (scheduled,) = sent
    assert isinstance(scheduled, SlaScheduled) and scheduled.due_at == at(45)


def test_a_repeated_pause_request_is_the_same_pause(policy: Policy) -> None:
    paused, _ = pause(opened(policy), at(10))
    assert pause(paused, at(12)) == (paused, [])
    running, _ = resumed(policy, paused, 25)
    assert running.due_at == at(45)
    assert resume(running, policy.calendars[running.calendar], at(28)) == (running, [])


def test_two_pauses_add_up(policy: Policy) -> None:
    # 10 -> 15 and 20 -> 30 min: 15 min given back, due 45.
    clock, _ = resumed(policy, pause(opened(policy), at(10))[0], 15)
    clock, _ = resumed(policy, pause(clock, at(20))[0], 30)
    assert clock.due_at == at(45)
    assert [p.ended_at for p in clock.pauses] == [at(15), at(30)]


@pytest.mark.parametrize("order", ["pause first", "reclassify first"])
def test_pause_and_reclassification_in_either_order(policy: Policy, order: str) -> None:
    # Reclassified to standard (due 60, warning 45 unpaused) and paused 10 -> 25 min:
    # due 75, warning 60, whichever came first.
    clock = opened(policy)
    if order == "pause first":
        clock, _ = pause(clock, at(10))
        clock, _ = reclassify(clock, "standard", policy, at(15))
        # Still paused: due_at says when it would be due if resumed now (60 + 5).
        assert clock.paused and clock.due_at == at(65) and clock.next_fire() is None
    else:
        clock, _ = reclassify(clock, "standard", policy, at(5))
        clock, _ = pause(clock, at(10))
    clock, _ = resumed(policy, clock, 25)
    assert (clock.severity, clock.due_at, clock.warn_at) == ("standard", at(75), at(60))


def test_reclassifying_a_resumed_clock_keeps_its_past_pause(policy: Policy) -> None:
    clock, _ = resumed(policy, pause(opened(policy), at(10))[0], 25)
    moved, _ = reclassify(clock, "standard", policy, at(30))
    assert (moved.due_at, moved.warn_at) == (at(75), at(60))  # 60 + 15, 45 + 15


def test_answered_or_breached_clocks_do_not_pause(policy: Policy) -> None:
    answered, _ = respond(opened(policy), at(5))
    assert pause(answered, at(10)) == (answered, [])
    breached, _ = fire_due(opened(policy), at(31))
    assert breached.state == "breached"
    assert pause(breached, at(40)) == (breached, [])


def test_pauses_survive_the_store_round_trip_and_old_rows_still_load(policy: Policy) -> None:
    clock, _ = pause(opened(policy), at(10))
    assert Clock.model_validate(clock.model_dump(mode="json")) == clock
    old = opened(policy).model_dump(mode="json")
    for key in ("pauses", "unpaused_due_at", "unpaused_warn_at"):
        del old[key]
    assert Clock.model_validate(old) == opened(policy)


def test_sla_recompute_keeps_pauses(policy: Policy) -> None:
    # Paused 10 -> 25 min: due 45. Recomputed under the same policy it stays 45 (not the
    # unpaused 30) and nothing is announced; a clock still paused stays paused.
    clock, _ = resumed(policy, pause(opened(policy), at(10))[0], 25)
    assert migrate_clock(clock, policy, at(30)) == (clock, [])
    paused, _ = pause(clock, at(35))
    recomputed, _ = migrate_clock(paused, policy, at(40))
    assert recomputed.paused and recomputed.next_fire() is None
    assert recomputed.due_at == at(50)  # 30 + 15 + 5 so far, as if resumed at 40


def test_a_reply_while_paused_is_on_time_if_budget_was_left_at_the_pause(policy: Policy) -> None:
    # Due 30; paused at 25 with 5 min left; the agent answers at 40, still paused: met.
    paused, _ = pause(opened(policy), at(25))
    assert respond(paused, at(40))[0].state == "met"
    # Resumed at 40 (due 45), answered at 50: late.
    running, _ = resumed(policy, paused, 40)
    assert respond(running, at(50))[0].state == "responded_late"


def test_a_clock_already_due_does_not_pause_and_still_breaches(policy: Policy) -> None:
    # Due 30, not fired yet at 31 (scheduler tick): the pause request changes nothing.
    clock = opened(policy)
    assert pause(clock, at(31)) == (clock, [])
    assert fire_due(clock, at(32))[0].state == "breached"


def test_sla_explain_shows_each_pause_and_counts_without_it(policy: Policy) -> None:
    # not-super-admin: 1 business day on support-hours (Mon-Fri 09:00-17:30 Amsterdam),
    # warning 1 h before. Opened Fri 27 Nov 16:00: due Mon 30 Nov 16:00, warning 15:00.
    # Paused Fri 17:00 -> Mon 10:00: 0.5 h + 1 h given back, due Mon 17:30, warning 16:30.
    created = datetime(2026, 11, 27, 16, tzinfo=AMS)
    outcome = open_clock(ticket(role="user", severity="standard", created_at=created), policy, "c")
    assert outcome is not None
    clock, _ = pause(outcome[0], datetime(2026, 11, 27, 17, tzinfo=AMS))
    open_expl = explain_clock(clock, policy)
    assert [(p.ended_at, p.given_back) for p in open_expl.pauses] == [(None, None)]
    assert any("paused" in note for note in open_expl.notes)
    assert "still paused" in _rendered(open_expl)

    clock, _ = resume(
        clock, policy.calendars[clock.calendar], datetime(2026, 11, 30, 10, tzinfo=AMS)
    )
    assert clock.due_at == datetime(2026, 11, 30, 17, 30, tzinfo=AMS)
    assert clock.warn_at == datetime(2026, 11, 30, 16, 30, tzinfo=AMS)
    expl = explain_clock(clock, policy)
    (shown,) = expl.pauses
    assert shown.started_at == datetime(2026, 11, 27, 17, tzinfo=AMS)
    assert shown.ended_at == datetime(2026, 11, 30, 10, tzinfo=AMS)
    assert shown.given_back == timedelta(hours=1, minutes=30)
    # Counted segments start to due: Fri 1.5 h + Mon 8.5 h = 10 h, less 1.5 h paused.
    assert expl.counted == timedelta(hours=8, minutes=30)
    assert expl.notes == []
    text = _rendered(expl)
    assert "paused" in text and "1h30m back" in text and "Fri 2026-11-27 17:00:00 CET" in text


def _rendered(expl: Explanation) -> str:
    console = Console(record=True, width=200)
    console.print(render_explanation(expl))
    return console.export_text()
