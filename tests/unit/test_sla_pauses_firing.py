"""A paused clock still fires what fell due before the pause began (pure).

The packaged default policy on its 24/7 calendar, as in test_sla_pauses_clock.py:
business_critical due 30 min after the start with a warning at 20; standard 60 and 45.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from services.sla_timer.clock import fire_due, pause, reclassify
from services.sla_timer.policy import load_policy
from tests.unit.test_sla_clock import START, opened

POLICY = load_policy(None)


def at(minutes: int) -> datetime:
    return START + timedelta(minutes=minutes)


def test_reclassified_while_paused_to_a_budget_already_run_out_still_breaches() -> None:
    # Standard (due 60, warning 45) paused at 40; reclassified at 50 to business_critical
    # (due 30, warning 20): that budget ran out before the pause began, so warning and
    # breach fire although the clock is still paused.
    clock = opened(POLICY, severity="standard")
    assert (clock.due_at, clock.warn_at) == (at(60), at(45))
    paused, _ = pause(clock, at(40))
    moved, _ = reclassify(paused, "business_critical", POLICY, at(50))
    assert moved.paused and moved.due_at == at(30) and moved.next_fire() == at(20)
    fired, events = fire_due(moved, at(51))
    assert fired.state == "breached" and len(events) == 2
    # Paused with budget left (the standard clock at 40): nothing fires, however late.
    assert fire_due(paused, at(500)) == (paused, [])
