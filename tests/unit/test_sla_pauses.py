"""Paused SLA clocks: hand-computed deadlines over the NL support calendar.

Calendar: Europe/Amsterdam, Mon-Fri 09:00-17:30 (8.5 h a day), NL public holidays.
Each case says in its comment how the expected instant was worked out by hand.
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.sla_timer.calendar import BusinessCalendar, add_business_days, add_business_time
from services.sla_timer.pauses import (
    Pause,
    is_paused,
    merge_pauses,
    paused_business_time,
    paused_deadline,
    paused_deadlines,
)

AMS = ZoneInfo("Europe/Amsterdam")
H = timedelta(hours=1)
NL = BusinessCalendar.model_validate(
    {
        "name": "support-hours",
        "timezone": "Europe/Amsterdam",
        "hours": {
            d: [{"start": "09:00", "end": "17:30"}] for d in ("mon", "tue", "wed", "thu", "fri")
        },
        "holidays": {"country": "NL"},
    }
)
ALWAYS = BusinessCalendar(name="always", always_open=True)


def ams(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=AMS)


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def test_the_dates_used_are_the_weekdays_the_comments_say() -> None:
    # Guards the hand computations below against a misread calendar.
    assert date(2026, 3, 10).strftime("%a") == "Tue"
    assert date(2026, 3, 13).strftime("%a") == "Fri"
    assert date(2026, 3, 27).strftime("%a") == "Fri"
    assert date(2026, 4, 24).strftime("%a") == "Fri"
    assert date(2026, 4, 27).strftime("%a") == "Mon"  # King's Day


def test_no_pauses_is_the_plain_business_deadline() -> None:
    # Tue 16:00 + 4 h: 1.5 h on Tuesday, 2.5 h on Wednesday from 09:00 -> Wed 11:30.
    assert paused_deadline(NL, ams(2026, 3, 10, 16), 4 * H, []) == ams(2026, 3, 11, 11, 30)


# case: (clock start, pause start, pause end, due, hours given back), local times, budget 4 h.
#   over a night: runs Tue 16:00-17:00 (1 h), paused Tue 17:00 -> Wed 10:00, 3 h left ->
#     Wed 13:00; given back 17:00-17:30 + 09:00-10:00 = 1.5 h, not 17 wall-clock hours.
#   over a weekend: runs Fri 15:00-16:00, paused to Mon 11:00, 3 h left -> Mon 14:00;
#     given back 16:00-17:30 + 09:00-11:00 = 3.5 h.
#   over a holiday: runs Fri 24 Apr 16:00-17:00, paused to Tue 28 Apr 10:00 (Mon 27 Apr is
#     King's Day, closed), 3 h left -> Tue 13:00; given back 0.5 h Fri + 1 h Tue = 1.5 h.
PAUSE_CASES = {
    "over a night": (
        "2026-03-10 16:00",
        "2026-03-10 17:00",
        "2026-03-11 10:00",
        "2026-03-11 13:00",
        1.5,
    ),
    "over a weekend": (
        "2026-03-13 15:00",
        "2026-03-13 16:00",
        "2026-03-16 11:00",
        "2026-03-16 14:00",
        3.5,
    ),
    "over a holiday": (
        "2026-04-24 16:00",
        "2026-04-24 17:00",
        "2026-04-28 10:00",
        "2026-04-28 13:00",
        1.5,
    ),
}


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=AMS)


@pytest.mark.parametrize("case", PAUSE_CASES)
def test_a_pause_gives_back_only_the_open_hours_it_covered(case: str) -> None:
    *times, hours_back = PAUSE_CASES[case]
    start, paused, resumed, due = (local(str(t)) for t in times)
    pause = Pause(paused, resumed)
    assert paused_deadline(NL, start, 4 * H, [pause]) == due
    assert paused_business_time(NL, [pause], due + 100 * H) == hours_back * H


def test_pause_across_the_spring_dst_change_keeps_wall_clock_hours() -> None:
    # Fri 27 Mar 16:00 CET, 4 h. Runs 1 h, paused Fri 17:00 CET -> Mon 30 Mar 10:00 CEST
    # (clocks went forward on Sun 29 Mar), 3 h left -> Mon 13:00 CEST = 11:00 UTC.
    pause = Pause(ams(2026, 3, 27, 17), ams(2026, 3, 30, 10))
    due = paused_deadline(NL, ams(2026, 3, 27, 16), 4 * H, [pause])
    assert due == ams(2026, 3, 30, 13) == utc(2026, 3, 30, 11)


def test_pause_across_dst_on_a_24_7_clock_gives_back_real_elapsed_time() -> None:
    # Spring: Sat 28 Mar 20:00 CET (19:00 UTC) -> Sun 29 Mar 20:00 CEST (18:00 UTC) is
    # 23 real hours. Start Sat 09:00 UTC + 48 h + 23 h = Tue 31 Mar 08:00 UTC.
    spring = Pause(ams(2026, 3, 28, 20), ams(2026, 3, 29, 20))
    due = paused_deadline(ALWAYS, utc(2026, 3, 28, 9), 48 * H, [spring])
    assert due == utc(2026, 3, 31, 8)
    # Autumn: Sat 24 Oct 20:00 CEST (18:00 UTC) -> Sun 25 Oct 20:00 CET (19:00 UTC) is 25 h.
    autumn = Pause(ams(2026, 10, 24, 20), ams(2026, 10, 25, 20))
    assert paused_business_time(ALWAYS, [autumn], utc(2026, 11, 1)) == 25 * H
    assert paused_deadline(ALWAYS, utc(2026, 10, 24, 9), 48 * H, [autumn]) == utc(2026, 10, 27, 10)


def test_pause_that_starts_before_opening_hours_gives_back_only_from_opening() -> None:
    # Tue 16:00, 4 h: 1.5 h run on Tuesday; paused Wed 07:00 -> 09:30, of which only
    # 09:00-09:30 was open. 2.5 h left from 09:30 -> Wed 12:00 (plain deadline 11:30 + 0.5 h).
    pause = Pause(ams(2026, 3, 11, 7), ams(2026, 3, 11, 9, 30))
    assert paused_deadline(NL, ams(2026, 3, 10, 16), 4 * H, [pause]) == ams(2026, 3, 11, 12)


def test_pause_entirely_outside_opening_hours_changes_nothing() -> None:
    pause = Pause(ams(2026, 3, 10, 18), ams(2026, 3, 11, 8, 30))
    assert paused_deadline(NL, ams(2026, 3, 10, 16), 4 * H, [pause]) == ams(2026, 3, 11, 11, 30)


def test_overlapping_pause_requests_do_not_count_time_twice() -> None:
    # Wed 09:00, 4 h. Pauses 10:00-12:00 and 11:00-13:00 merge to 10:00-13:00.
    # Runs 09:00-10:00 (1 h), 3 h left from 13:00 -> Wed 16:00.
    pauses = [
        Pause(ams(2026, 3, 11, 11), ams(2026, 3, 11, 13)),
        Pause(ams(2026, 3, 11, 10), ams(2026, 3, 11, 12)),
    ]
    assert merge_pauses(pauses) == [Pause(ams(2026, 3, 11, 10), ams(2026, 3, 11, 13))]
    assert paused_deadline(NL, ams(2026, 3, 11, 9), 4 * H, pauses) == ams(2026, 3, 11, 16)


def test_a_second_pause_request_while_paused_is_the_same_pause() -> None:
    pauses = [Pause(ams(2026, 3, 11, 10)), Pause(ams(2026, 3, 11, 11))]
    assert merge_pauses(pauses) == [Pause(ams(2026, 3, 11, 10))]
    assert is_paused(pauses)
    assert paused_deadline(NL, ams(2026, 3, 11, 9), 4 * H, pauses) is None
    # Open since 10:00, asked at 12:30: 2.5 h given back so far.
    assert paused_business_time(NL, pauses, ams(2026, 3, 11, 12, 30)) == 2.5 * H


def test_an_open_pause_means_no_deadline_until_resumed() -> None:
    open_pause = Pause(ams(2026, 3, 10, 17))
    assert paused_deadline(NL, ams(2026, 3, 10, 16), 4 * H, [open_pause]) is None
    resumed = Pause(ams(2026, 3, 10, 17), ams(2026, 3, 11, 10))
    assert paused_deadline(NL, ams(2026, 3, 10, 16), 4 * H, [resumed]) == ams(2026, 3, 11, 13)


def test_a_pause_after_the_budget_ran_out_does_not_revive_the_clock() -> None:
    # Wed 09:00 + 1 h = 10:00; a pause from 11:00 (open or closed) changes nothing.
    start = ams(2026, 3, 11, 9)
    assert paused_deadline(NL, start, H, [Pause(ams(2026, 3, 11, 11))]) == ams(2026, 3, 11, 10)
    late = Pause(ams(2026, 3, 11, 11), ams(2026, 3, 11, 15))
    assert paused_deadline(NL, start, H, [late]) == ams(2026, 3, 11, 10)


def test_a_pause_from_before_the_clock_started_only_counts_from_the_start() -> None:
    # Clock starts Wed 10:00, pause Wed 09:00 -> 11:00: runs from 11:00, 4 h -> 15:00.
    pause = Pause(ams(2026, 3, 11, 9), ams(2026, 3, 11, 11))
    assert paused_deadline(NL, ams(2026, 3, 11, 10), 4 * H, [pause]) == ams(2026, 3, 11, 15)


@pytest.mark.parametrize("order", ["pause then reclassify", "reclassify then pause"])
def test_pause_and_reclassification_in_either_order_keep_the_pause(order: str) -> None:
    # Tue 16:00, paused Tue 17:00 -> Wed 10:00, reclassified from 4 h to 8 h.
    # 8 h: 1 h before the pause, 7 h from Wed 10:00 -> Wed 17:00 (plain 15:30 + 1.5 h).
    # The deadline is recomputed from start, new budget and every pause, so the order of
    # the two events (here: of the pause history as recorded) cannot matter.
    start = ams(2026, 3, 10, 16)
    history = [
        Pause(ams(2026, 3, 10, 17), ams(2026, 3, 11, 10)),
        Pause(ams(2026, 3, 11, 9, 30), ams(2026, 3, 11, 9, 45)),
    ]
    if order == "reclassify then pause":
        history.reverse()
    assert paused_deadline(NL, start, 4 * H, history) == ams(2026, 3, 11, 13)
    assert paused_deadline(NL, start, 8 * H, history) == ams(2026, 3, 11, 17)


def test_resumed_by_a_customer_reply_ends_the_pause_at_the_reply() -> None:
    # Waiting on customer from Thu 12 Mar 11:00; the customer replies Thu 14:15 (ends the
    # pause). Clock started Thu 09:00 with 4 h: 2 h ran, 2 h left from 14:15 -> 16:15.
    pause = Pause(ams(2026, 3, 12, 11), ams(2026, 3, 12, 14, 15))
    assert paused_deadline(NL, ams(2026, 3, 12, 9), 4 * H, [pause]) == ams(2026, 3, 12, 16, 15)


def test_recomputed_deadline_is_start_plus_budget_plus_paused_business_time() -> None:
    # The invariant `sla recompute` relies on, checked over random pause histories.
    rng = random.Random(12)
    start = ams(2026, 3, 2, 9)
    for _ in range(200):
        pauses = []
        for _ in range(rng.randint(0, 4)):
            begin = start + timedelta(minutes=rng.randint(0, 60 * 24 * 10))
            pauses.append(Pause(begin, begin + timedelta(minutes=rng.randint(0, 60 * 48))))
        budget = timedelta(minutes=rng.randint(0, 60 * 40))
        due = paused_deadline(NL, start, budget, pauses)
        assert due is not None
        before_due = [
            Pause(p.started_at, min(p.ended_at or due, due)) for p in pauses if p.started_at < due
        ]
        given_back = paused_business_time(NL, before_due, due)
        assert add_business_time(NL, start, budget + given_back) == due


def test_naive_or_backwards_pauses_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        Pause(datetime(2026, 3, 11, 10))
    with pytest.raises(ValueError, match="before it starts"):
        Pause(ams(2026, 3, 11, 10), ams(2026, 3, 11, 9))


def test_paused_deadlines_without_pauses_are_the_unpaused_ones() -> None:
    # Duration rule: Tue 16:00 + 4 h = Wed 11:30, warning 1 h before = Wed 10:30.
    plain = (ams(2026, 3, 11, 11, 30), ams(2026, 3, 11, 10, 30))
    assert paused_deadlines(NL, ams(2026, 3, 10, 16), *plain, []) == plain
    # Business-days rule from before opening: Tue 08:00 + 1 day = Wed 09:00, an opening.
    start = ams(2026, 3, 10, 8)
    due = add_business_days(NL, start, 1)
    assert due == ams(2026, 3, 11, 9)
    assert paused_deadlines(NL, start, due, None, []) == (due, None)
    # A zero-length pause gives nothing back and must not move that deadline to Tue 17:30.
    still = [Pause(ams(2026, 3, 10, 12), ams(2026, 3, 10, 12))]
    assert paused_deadlines(NL, start, due, None, still) == (due, None)


def test_paused_deadlines_move_due_and_warning_alike() -> None:
    # Tue 16:00, 4 h (due Wed 11:30), warning 1 h before (3 h: Wed 10:30). Paused Tue
    # 17:00 -> Wed 10:00: due 1 h run + 3 h from 10:00 = 13:00; warning 1 h + 2 h = 12:00.
    pause = Pause(ams(2026, 3, 10, 17), ams(2026, 3, 11, 10))
    plain = (ams(2026, 3, 11, 11, 30), ams(2026, 3, 11, 10, 30))
    moved = paused_deadlines(NL, ams(2026, 3, 10, 16), *plain, [pause])
    assert moved == (ams(2026, 3, 11, 13), ams(2026, 3, 11, 12))
    assert paused_deadlines(NL, ams(2026, 3, 10, 16), *plain, [Pause(pause.started_at)]) == (
        None,
        None,
    )


def test_a_business_days_budget_pauses_in_business_time() -> None:
    # Tue 11:00 + 1 business day = Wed 11:00 (8.5 h). Paused Tue 15:00 -> Wed 09:30:
    # runs 11:00-15:00 (4 h), 4.5 h left from Wed 09:30 -> Wed 14:00.
    start = ams(2026, 3, 10, 11)
    due = add_business_days(NL, start, 1)
    assert due == ams(2026, 3, 11, 11)
    pause = Pause(ams(2026, 3, 10, 15), ams(2026, 3, 11, 9, 30))
    assert paused_deadlines(NL, start, due, None, [pause]) == (ams(2026, 3, 11, 14), None)


def test_a_duration_budget_running_out_at_closing_after_a_pause_stays_at_closing() -> None:
    # Wed 09:00 + 4 h = Wed 13:00. Paused 10:00 -> 14:30: 1 h ran, 3 h left from 14:30 ->
    # exactly 17:30, closing. Due Wed 17:30 as without pauses, not Thu 09:00 (a night later).
    start = ams(2026, 3, 11, 9)
    pause = Pause(ams(2026, 3, 11, 10), ams(2026, 3, 11, 14, 30))
    plain = (ams(2026, 3, 11, 13), ams(2026, 3, 11, 12))
    moved = (ams(2026, 3, 11, 17, 30), ams(2026, 3, 11, 16, 30))
    assert paused_deadlines(NL, start, *plain, [pause]) == moved
