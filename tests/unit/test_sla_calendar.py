"""Business calendars and business-time arithmetic: hand-computed cases and properties."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from services.sla_timer.calendar import (
    BusinessCalendar,
    add_business_days,
    add_business_time,
    business_time_between,
    day_status,
    is_open,
    subtract_business_time,
)
from services.sla_timer.explain import explain_span

AMS = ZoneInfo("Europe/Amsterdam")
NYC = ZoneInfo("America/New_York")
WORKDAYS = ("mon", "tue", "wed", "thu", "fri")


def office(name: str, tz: str, *intervals: tuple[str, str], **extra: object) -> BusinessCalendar:
    hours = {d: [{"start": s, "end": e} for s, e in intervals] for d in WORKDAYS}
    return BusinessCalendar.model_validate({"name": name, "timezone": tz, "hours": hours, **extra})


NL = office("support-hours", "Europe/Amsterdam", ("09:00", "17:30"), holidays={"country": "NL"})
NY = office("ny", "America/New_York", ("09:00", "17:30"))
LUNCH = office("lunch", "Europe/Amsterdam", ("09:00", "12:00"), ("13:00", "17:30"))
ALWAYS = BusinessCalendar(name="always", always_open=True)
ROUND_THE_CLOCK_SUNDAY = BusinessCalendar.model_validate(
    {
        "name": "sun",
        "timezone": "Europe/Amsterdam",
        "hours": {"sun": [{"start": "00:00", "end": "24:00"}]},
    }
)


def ams(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=AMS)


def nyc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=NYC)


H = timedelta(hours=1)
M = timedelta(minutes=1)


# --- hand-computed cases -------------------------------------------------------------


def test_one_business_day_across_a_weekend() -> None:
    due = add_business_days(NL, ams(2026, 11, 27, 16, 0), 1)  # Friday
    assert due == ams(2026, 11, 30, 16, 0)  # Monday, same local time
    assert due.tzinfo == UTC
    assert business_time_between(NL, ams(2026, 11, 27, 16, 0), due) == 8 * H + 30 * M


def test_business_time_across_a_weekend() -> None:
    assert add_business_time(NL, ams(2026, 11, 27, 16, 0), 2 * H) == ams(2026, 11, 30, 9, 30)
    # running out exactly at closing time is due at closing time, not at the next opening
    assert add_business_time(NL, ams(2026, 11, 27, 17, 0), 30 * M) == ams(2026, 11, 27, 17, 30)


def test_christmas_is_skipped() -> None:
    # Thu 24 Dec; Fri 25 and Sat 26 are holidays, then Sunday
    assert add_business_days(NL, ams(2026, 12, 24, 16, 0), 1) == ams(2026, 12, 28, 16, 0)
    assert day_status(NL, date(2026, 12, 25)) == ("holiday", "Christmas Day")


def test_kings_day_is_skipped() -> None:
    start = ams(2027, 4, 26, 10, 0)  # Monday; Tuesday 27 April 2027 is King's Day
    assert add_business_days(NL, start, 1) == ams(2027, 4, 28, 10, 0)
    assert add_business_time(NL, start, 8 * H) == ams(2027, 4, 28, 9, 30)
    assert business_time_between(NL, start, ams(2027, 4, 28, 10, 0)) == 8 * H + 30 * M


def test_closed_dates_are_skipped() -> None:
    cal = office("c", "Europe/Amsterdam", ("09:00", "17:30"), closed_dates=["2026-11-30"])
    assert add_business_days(cal, ams(2026, 11, 27, 16, 0), 1) == ams(2026, 12, 1, 16, 0)
    assert day_status(cal, date(2026, 11, 30)) == ("closed", "closed")


@pytest.mark.parametrize(
    ("start", "budget", "due"),
    [
        (ams(2026, 11, 28, 11, 0), 30 * M, ams(2026, 11, 30, 9, 30)),  # Saturday
        (ams(2026, 12, 1, 20, 0), 30 * M, ams(2026, 12, 2, 9, 30)),  # Tuesday night
        (ams(2026, 12, 2, 7, 0), timedelta(0), ams(2026, 12, 2, 9, 0)),  # before opening
        (ams(2026, 12, 2, 17, 30), 1 * M, ams(2026, 12, 3, 9, 1)),  # exactly at closing
    ],
)
def test_counting_starts_at_the_next_opening(
    start: datetime, budget: timedelta, due: datetime
) -> None:
    assert add_business_time(NL, start, budget) == due


def test_one_business_day_from_the_weekend_starts_counting_on_monday() -> None:
    assert add_business_days(NL, ams(2026, 11, 28, 11, 0), 1) == ams(2026, 12, 1, 9, 0)


def test_lunch_break_is_not_counted() -> None:
    assert add_business_time(LUNCH, ams(2026, 11, 30, 11, 30), 1 * H) == ams(2026, 11, 30, 13, 30)
    assert add_business_time(LUNCH, ams(2026, 11, 30, 12, 15), 10 * M) == ams(2026, 11, 30, 13, 10)
    assert business_time_between(LUNCH, ams(2026, 11, 30, 11, 0), ams(2026, 11, 30, 14, 0)) == 2 * H
    assert not is_open(LUNCH, ams(2026, 11, 30, 12, 30))
    # the warning lead skips the break backwards too
    assert subtract_business_time(LUNCH, ams(2026, 11, 30, 13, 5), 10 * M) == ams(
        2026, 11, 30, 11, 55
    )


def test_one_business_day_from_a_lunch_break() -> None:
    # counting starts 13:00, so due is 13:00 the next business day
    assert add_business_days(LUNCH, ams(2026, 11, 30, 12, 15), 1) == ams(2026, 12, 1, 13, 0)


def test_one_business_day_is_kept_within_the_next_days_hours() -> None:
    cal = BusinessCalendar.model_validate(
        {
            "name": "short-friday",
            "timezone": "Europe/Amsterdam",
            "hours": {
                "thu": [{"start": "09:00", "end": "17:30"}],
                "fri": [{"start": "09:00", "end": "15:00"}],
                "mon": [{"start": "10:00", "end": "17:30"}],
            },
        }
    )
    assert add_business_days(cal, ams(2026, 11, 26, 16, 0), 1) == ams(2026, 11, 27, 15, 0)
    assert add_business_days(cal, ams(2026, 11, 27, 9, 30), 1) == ams(2026, 11, 30, 10, 0)


@pytest.mark.parametrize(
    ("cal", "start", "due", "hours_apart"),
    [
        (NL, ams(2026, 3, 27, 10, 0), ams(2026, 3, 30, 10, 0), 71),  # CET -> CEST
        (NL, ams(2026, 10, 23, 10, 0), ams(2026, 10, 26, 10, 0), 73),  # CEST -> CET
        (NY, nyc(2026, 3, 6, 10, 0), nyc(2026, 3, 9, 10, 0), 71),  # EST -> EDT
        (NY, nyc(2026, 10, 30, 10, 0), nyc(2026, 11, 2, 10, 0), 73),  # EDT -> EST
    ],
)
def test_dst_keeps_the_local_wall_clock_time(
    cal: BusinessCalendar, start: datetime, due: datetime, hours_apart: int
) -> None:
    got = add_business_days(cal, start, 1)
    assert got == due
    assert got.astimezone(cal.zone).hour == 10
    assert got - start == hours_apart * H
    assert business_time_between(cal, start, got) == 8 * H + 30 * M
    assert add_business_time(cal, start, 8 * H + 30 * M) == due


def test_open_hours_on_dst_days_are_local_wall_clock() -> None:
    cal = ROUND_THE_CLOCK_SUNDAY  # open all Sunday, local time
    assert business_time_between(cal, ams(2026, 3, 29, 0, 0), ams(2026, 3, 30, 0, 0)) == 23 * H
    assert business_time_between(cal, ams(2026, 10, 25, 0, 0), ams(2026, 10, 26, 0, 0)) == 25 * H
    assert add_business_time(cal, ams(2026, 3, 29, 1, 0), 2 * H) == ams(2026, 3, 29, 4, 0)


@pytest.mark.parametrize(
    "start",
    [
        ams(2026, 3, 29, 0, 30),
        ams(2026, 10, 25, 1, 30),
        nyc(2026, 3, 8, 1, 0),
        nyc(2026, 11, 1, 0, 45),
    ],
)
def test_24_7_across_dst_is_exact_absolute_time(start: datetime) -> None:
    for budget in (5 * M, 30 * M, 1 * H, 5 * H):
        due = add_business_time(ALWAYS, start, budget)
        assert due - start == budget
        assert business_time_between(ALWAYS, start, due) == budget
        assert subtract_business_time(ALWAYS, due, budget) == start


def test_24_7_in_local_time_still_counts_absolute_time() -> None:
    cal = BusinessCalendar(name="always-ams", always_open=True, timezone="Europe/Amsterdam")
    assert add_business_time(cal, ams(2026, 3, 29, 0, 30), 5 * H) == ams(2026, 3, 29, 6, 30)


def test_warning_lead_can_fall_before_the_weekend() -> None:
    due = ams(2026, 11, 30, 9, 5)  # Monday
    assert subtract_business_time(NL, due, 10 * M) == ams(2026, 11, 27, 17, 25)  # Friday
    assert subtract_business_time(NL, due, timedelta(0)) == due


def test_huge_budgets_terminate() -> None:
    start = ams(2026, 11, 27, 16, 0)
    far = add_business_time(NL, start, timedelta(days=500))  # 12000 business hours
    assert business_time_between(NL, start, far) == timedelta(days=500)
    with pytest.raises(ValueError, match="too little open time"):
        add_business_time(NL, start, timedelta(days=365 * 30))
    with pytest.raises(ValueError, match="too little open time"):
        subtract_business_time(NL, start, timedelta(days=365 * 30))


def test_bad_inputs() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        add_business_time(NL, datetime(2026, 11, 27, 16, 0), H)
    with pytest.raises(ValueError, match="negative"):
        add_business_time(NL, ams(2026, 11, 27, 16, 0), -H)


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"timezone": "Mars/Olympus"}, "unknown IANA time zone"),
        ({"hours": {"mon": [{"start": "17:00", "end": "09:00"}]}}, "must be before"),
        ({"hours": {"mon": [{"start": "25:00", "end": "26:00"}]}}, "HH:MM"),
        ({"hours": {"monday": [{"start": "09:00", "end": "17:00"}]}}, "mon"),
        (
            {
                "hours": {
                    "mon": [{"start": "09:00", "end": "13:00"}, {"start": "12:00", "end": "17:00"}]
                }
            },
            "overlaps",
        ),
        ({"hours": {}}, "no opening hours"),
        ({"holidays": {"country": "XX"}}, "XX"),
        ({"always_open": True}, "takes no hours"),
    ],
)
def test_calendar_validation(fields: dict[str, object], problem: str) -> None:
    base: dict[str, object] = {
        "name": "x",
        "timezone": "UTC",
        "hours": {"mon": [{"start": "09:00", "end": "17:00"}]},
    }
    with pytest.raises(ValidationError, match=problem):
        BusinessCalendar.model_validate({**base, **fields})


# --- explain -------------------------------------------------------------------------


def test_explain_christmas() -> None:
    start = ams(2026, 12, 24, 16, 0)
    nl_lunch = office(
        "nl-lunch",
        "Europe/Amsterdam",
        ("09:00", "12:00"),
        ("13:00", "17:30"),
        holidays={"country": "NL"},
    )
    segments = explain_span(nl_lunch, start, ams(2026, 12, 28, 14, 0))
    assert [(s.kind, s.label) for s in segments] == [
        ("counted", "Thu 2026-12-24 13:00-17:30"),
        ("night", "outside hours"),
        ("holiday", "Christmas Day"),
        ("holiday", "Second Day of Christmas"),
        ("weekend", "weekend"),
        ("night", "outside hours"),
        ("counted", "Mon 2026-12-28 09:00-12:00"),
        ("closed", "break"),
        ("counted", "Mon 2026-12-28 13:00-17:30"),
    ]
    assert segments[0].start == start
    assert segments[-1].end == ams(2026, 12, 28, 14, 0)
    counted = sum((s.duration for s in segments if s.kind == "counted"), timedelta(0))
    assert counted == 1 * H + 30 * M + 3 * H + 1 * H


def test_explain_weekend_is_one_segment_and_24_7_is_one_counted_segment() -> None:
    segments = explain_span(NL, ams(2026, 11, 27, 16, 0), ams(2026, 11, 30, 16, 0))
    assert [s.kind for s in segments] == ["counted", "night", "weekend", "night", "counted"]
    assert segments[2].duration == 48 * H
    assert [
        s.kind for s in explain_span(ALWAYS, ams(2026, 11, 27, 16, 0), ams(2026, 11, 30, 16, 0))
    ] == ["counted"]
    assert explain_span(NL, ams(2026, 11, 30, 16, 0), ams(2026, 11, 27, 16, 0)) == []


# --- properties ----------------------------------------------------------------------

CALENDARS = [NL, NY, LUNCH, ALWAYS, ROUND_THE_CLOCK_SUNDAY]
starts = st.datetimes(
    min_value=datetime(2026, 1, 1), max_value=datetime(2028, 12, 31), timezones=st.just(UTC)
)
budgets = st.integers(min_value=0, max_value=120 * 3600).map(lambda s: timedelta(seconds=s))
calendars = st.sampled_from(CALENDARS)
PROPS = settings(max_examples=100, deadline=None)


@PROPS
@given(calendars, starts, budgets, budgets)
def test_due_is_never_before_start_and_monotone(
    cal: BusinessCalendar, start: datetime, b1: timedelta, b2: timedelta
) -> None:
    lo, hi = sorted((b1, b2))
    due_lo, due_hi = add_business_time(cal, start, lo), add_business_time(cal, start, hi)
    assert start <= due_lo <= due_hi


@PROPS
@given(starts, budgets)
def test_24_7_is_plain_addition(start: datetime, budget: timedelta) -> None:
    assert add_business_time(ALWAYS, start, budget) == start + budget


@PROPS
@given(calendars, starts, budgets)
def test_add_then_between_round_trips(
    cal: BusinessCalendar, start: datetime, budget: timedelta
) -> None:
    due = add_business_time(cal, start, budget)
    assert business_time_between(cal, start, due) == budget
    assert business_time_between(cal, due, start) == -budget


@PROPS
@given(calendars, starts, budgets, st.floats(min_value=0.01, max_value=1.0))
def test_subtract_after_add_is_consistent(
    cal: BusinessCalendar, start: datetime, budget: timedelta, share: float
) -> None:
    budget += timedelta(seconds=1)
    lead = max(timedelta(seconds=1), timedelta(seconds=int(budget.total_seconds() * share)))
    due = add_business_time(cal, start, budget)
    warn = subtract_business_time(cal, due, lead)
    assert start <= warn <= due
    assert business_time_between(cal, warn, due) == lead
    assert business_time_between(cal, start, warn) == budget - lead
    assert add_business_time(cal, warn, lead) == due


@settings(max_examples=60, deadline=None)
@given(st.sampled_from([NL, NY]), starts)
def test_one_business_day_keeps_local_time(cal: BusinessCalendar, start: datetime) -> None:
    counting = add_business_time(cal, start, timedelta(0)).astimezone(cal.zone)
    due = add_business_days(cal, start, 1).astimezone(cal.zone)
    assert (due.hour, due.minute, due.second) == (counting.hour, counting.minute, counting.second)
    assert due.date() > counting.date()
    assert business_time_between(cal, counting, due) == 8 * H + 30 * M


@settings(max_examples=40, deadline=None)
@given(calendars, starts, budgets)
def test_explain_covers_the_span_and_counts_business_time(
    cal: BusinessCalendar, start: datetime, budget: timedelta
) -> None:
    end = start + budget + timedelta(hours=1)
    segments = explain_span(cal, start, end)
    assert segments[0].start == start
    assert segments[-1].end == end
    assert all(a.end == b.start for a, b in itertools.pairwise(segments))
    counted = sum((s.duration for s in segments if s.kind == "counted"), timedelta(0))
    assert counted == business_time_between(cal, start, end)
