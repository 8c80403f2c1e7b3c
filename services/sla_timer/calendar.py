"""Business-time arithmetic over a `BusinessCalendar` (pure; times are passed in).

See `services.sla_timer.calendar_model` for how opening hours map to UTC (DST-safe:
intervals are local wall-clock, converted per date with zoneinfo, fold=0). Intervals are
half-open: open at 09:00, closed at 17:30, yet a budget that runs out exactly at closing
time is due at 17:30, not at the next opening. An `always_open` calendar is 24/7 and its
arithmetic is plain absolute time. All functions take timezone-aware datetimes and return
aware UTC datetimes; they raise ValueError for naive datetimes, negative durations, and a
calendar with too little open time within `MAX_DAYS` (about 20 years).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

from services.common.weekdays import WEEKDAYS, Weekday
from services.runtime.yaml_files import LocatedError
from services.sla_timer.calendar_model import (
    BusinessCalendar,
    DayKind,
    HolidaySource,
    Interval,
    day_status,
    local_midnight,
    open_intervals,
    wall_to_utc,
)

__all__ = [
    "MAX_DAYS",
    "WEEKDAYS",
    "BusinessCalendar",
    "DayKind",
    "HolidaySource",
    "Interval",
    "LocatedError",
    "Weekday",
    "add_business_days",
    "add_business_time",
    "business_time_between",
    "day_status",
    "is_open",
    "local_midnight",
    "open_intervals",
    "subtract_business_time",
]

MAX_DAYS = 20 * 366  # how far the arithmetic looks for open time before giving up


def _utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware, got {value!r}")
    return value.astimezone(UTC)


def _non_negative(value: timedelta, what: str) -> None:
    if value < timedelta(0):
        raise ValueError(f"{what} must not be negative, got {value}")


def _local_date(cal: BusinessCalendar, instant: datetime) -> date:
    return instant.astimezone(cal.zone).date()


def _walk(cal: BusinessCalendar, day: date, step: int) -> Iterator[tuple[datetime, datetime]]:
    """Open intervals day by day from `day` (forwards if step=1, backwards if -1)."""
    for i in range(MAX_DAYS):
        intervals = open_intervals(cal, day + timedelta(days=i * step))
        yield from (intervals if step > 0 else reversed(intervals))
    raise ValueError(f"calendar {cal.name!r} has too little open time within {MAX_DAYS} days")


def add_business_time(cal: BusinessCalendar, start: datetime, budget: timedelta) -> datetime:
    """The instant at which `budget` of open time has passed since `start`.

    Counting starts at the next opening if `start` is outside hours, so a zero budget
    gives the start of counting.
    """
    start = _utc(start, "start")
    _non_negative(budget, "budget")
    if cal.always_open:
        return start + budget
    remaining = budget
    for open_at, close_at in _walk(cal, _local_date(cal, start), 1):
        if close_at <= start:
            continue
        open_at = max(open_at, start)
        if remaining <= close_at - open_at:
            return open_at + remaining
        remaining -= close_at - open_at
    raise AssertionError("unreachable")  # pragma: no cover


def subtract_business_time(cal: BusinessCalendar, due: datetime, lead: timedelta) -> datetime:
    """The latest instant `t` with `lead` of open time between `t` and `due`."""
    due = _utc(due, "due")
    _non_negative(lead, "lead")
    if cal.always_open or not lead:
        return due - lead
    remaining = lead
    for open_at, close_at in _walk(cal, _local_date(cal, due), -1):
        if open_at >= due:
            continue
        close_at = min(close_at, due)
        if remaining <= close_at - open_at:
            return close_at - remaining
        remaining -= close_at - open_at
    raise AssertionError("unreachable")  # pragma: no cover


def business_time_between(cal: BusinessCalendar, a: datetime, b: datetime) -> timedelta:
    """Open time from `a` to `b` (negative if `b` is before `a`)."""
    a, b = _utc(a, "a"), _utc(b, "b")
    if b < a:
        return -business_time_between(cal, b, a)
    if cal.always_open:
        return b - a
    total = timedelta(0)
    day, last = _local_date(cal, a), _local_date(cal, b)
    while day <= last:
        for open_at, close_at in open_intervals(cal, day):
            total += max(timedelta(0), min(close_at, b) - max(open_at, a))
        day += timedelta(days=1)
    return total


def is_open(cal: BusinessCalendar, at: datetime) -> bool:
    at = _utc(at, "at")
    if cal.always_open:
        return True
    return any(o <= at < c for o, c in open_intervals(cal, _local_date(cal, at)))


def add_business_days(cal: BusinessCalendar, start: datetime, days: int) -> datetime:
    """`days` business days after `start`: the same local wall-clock time, `days` open days on.

    1. Counting starts at `s` = `start` if the calendar is open then, else the next opening.
    2. Step `days` open dates forward from `s`'s local date (weekends, holidays and closed
       dates are skipped).
    3. Take `s`'s local wall-clock time on that date (fold=0). If the calendar is open then
       (or it is exactly a closing time) that is the deadline; if it falls before an opening
       or in a break, the deadline is that opening; after the day's last closing, it is the
       last closing. So the deadline is always within that day's opening hours.

    On an always_open calendar it is the same local time `days` calendar days later.
    """
    if days < 0:
        raise ValueError(f"days must not be negative, got {days}")
    s = add_business_time(cal, start, timedelta(0)).astimezone(cal.zone)
    wall = s.hour * 60 + s.minute
    day = s.date()
    if cal.always_open:
        target = datetime.combine(day + timedelta(days=days), s.time(), tzinfo=cal.zone)
        return target.astimezone(UTC)
    for _ in range(days):
        for i in range(1, MAX_DAYS + 1):
            if day_status(cal, day + timedelta(days=i)) is None:
                day += timedelta(days=i)
                break
        else:
            raise ValueError(f"calendar {cal.name!r} has no open day within {MAX_DAYS} days")
    target = wall_to_utc(cal, day, wall) + timedelta(seconds=s.second, microseconds=s.microsecond)
    intervals = open_intervals(cal, day)
    if not intervals:  # every interval of that day fell into a DST gap
        return add_business_time(cal, target, timedelta(0))
    for open_at, close_at in intervals:
        if target < open_at:
            return open_at
        if target <= close_at:
            return target
    return intervals[-1][1]
