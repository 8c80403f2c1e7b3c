"""Paused SLA clocks: deadlines that exclude paused business time (pure; times passed in).

A clock pauses while the helpdesk waits on the customer. Only the business time a pause
overlaps (in the clock's own calendar) is given back: a pause over a night or a weekend
gives back the open hours it covered, not its wall-clock length (erpnext#49414 added the
whole wall-clock length). The deadline is always recomputed from the original start, the
budget and every pause, so a reclassification or a recompute cannot forget a pause.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from services.sla_timer.calendar import (
    BusinessCalendar,
    add_business_time,
    business_time_between,
    is_open,
)

_TICK = timedelta(microseconds=1)  # the instant just before


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


@dataclass(frozen=True)
class Pause:
    """Paused from `started_at` until `ended_at`; `ended_at` None means still paused."""

    started_at: datetime
    ended_at: datetime | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "started_at", _aware(self.started_at, "pause start"))
        if self.ended_at is not None:
            object.__setattr__(self, "ended_at", _aware(self.ended_at, "pause end"))
            if self.ended_at < self.started_at:
                raise ValueError(f"pause ends {self.ended_at} before it starts {self.started_at}")


def merge_pauses(pauses: Iterable[Pause]) -> list[Pause]:
    """Overlapping or touching pauses as one; an open pause swallows every later one.

    Repeated "waiting on customer" requests must not count the same time twice.
    """
    merged: list[Pause] = []
    for pause in sorted(pauses, key=lambda p: p.started_at):
        last = merged[-1] if merged else None
        if last is None or (last.ended_at is not None and pause.started_at > last.ended_at):
            merged.append(pause)
        elif last.ended_at is not None:
            end = None if pause.ended_at is None else max(last.ended_at, pause.ended_at)
            merged[-1] = Pause(last.started_at, end)
    return merged


def is_paused(pauses: Iterable[Pause]) -> bool:
    return any(p.ended_at is None for p in pauses)


def paused_deadline(
    cal: BusinessCalendar, started_at: datetime, budget: timedelta, pauses: Iterable[Pause]
) -> datetime | None:
    """When `budget` of business time has run since `started_at`, not counting pauses.

    None while paused (an open pause the budget has not run out before): the clock has
    no deadline until it resumes. A budget that ran out before a pause began is not
    revived by that pause; pauses before `started_at` give nothing back.
    """
    running_from = _aware(started_at, "started_at")
    remaining = budget
    for pause in merge_pauses(pauses):
        if pause.ended_at is not None and pause.ended_at <= running_from:
            continue
        if pause.started_at > running_from:
            ran = business_time_between(cal, running_from, pause.started_at)
            if ran >= remaining:
                break
            remaining -= ran
        if pause.ended_at is None:
            return None
        running_from = max(running_from, pause.ended_at)
    return add_business_time(cal, running_from, remaining)


def paused_business_time(
    cal: BusinessCalendar, pauses: Iterable[Pause], now: datetime
) -> timedelta:
    """Business time inside the pauses up to `now` (what `sla explain` reports as given back)."""
    now = _aware(now, "now")
    total = timedelta(0)
    for pause in merge_pauses(pauses):
        end = now if pause.ended_at is None else min(pause.ended_at, now)
        if end > pause.started_at:
            total += business_time_between(cal, pause.started_at, end)
    return total


def paused_deadlines(
    cal: BusinessCalendar,
    started_at: datetime,
    due_at: datetime,
    warn_at: datetime | None,
    pauses: Iterable[Pause],
) -> tuple[datetime | None, datetime | None]:
    """A clock's (due, warn) from its unpaused ones, for any kind of budget.

    The budget is measured as the business time from start to the unpaused instant, so a
    business-days rule pauses like a duration rule. A deadline inside opening hours (a
    business-days one may sit exactly at an opening) stays inside them rather than moving
    to the previous closing, which has the same business time but is a night earlier.
    """
    pauses = list(pauses)

    def shifted(plain: datetime | None) -> datetime | None:
        if plain is None:
            return None
        budget = business_time_between(cal, started_at, plain)
        moved = paused_deadline(cal, started_at, budget, pauses)
        # Only a deadline sitting exactly at an opening: one that ran out at a closing
        # stays at that closing, as `add_business_time` has it without pauses.
        at_opening = is_open(cal, plain) and not is_open(cal, plain - _TICK)
        if moved is not None and at_opening and not is_open(cal, moved):
            moved = add_business_time(cal, moved, timedelta(0))
        return moved

    return shifted(due_at), shifted(warn_at)
