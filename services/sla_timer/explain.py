"""Why a deadline is where it is: the span from start to due, cut into labelled segments.

Used by `premium-support sla explain`. The segments cover [start, end] without gaps, in
order, and only `counted` ones add up to business time:

- `counted`: inside an open interval (label: local date and hours, e.g.
  `Fri 2026-11-27 09:00-17:30`; `24/7` on an always-open calendar);
- `night`: outside hours on a working day, before the first opening or after the last
  closing (label `outside hours`);
- `closed`: a break between two intervals on a working day (label `break`) or a date in
  `closed_dates` (label `closed`);
- `weekend`: a weekday without opening hours (label `weekend`);
- `holiday`: a public holiday (label: its name, e.g. `Christmas Day`);
- `paused`: open hours while the helpdesk waited on the customer (`cut_pauses`; label
  `waiting on the customer`): given back, not counted.

Adjacent segments of the same kind and label are merged, so a weekend is one segment.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict

from services.sla_timer.calendar import (
    BusinessCalendar,
    DayKind,
    day_status,
    local_midnight,
    open_intervals,
)

SegmentKind = Literal["counted", "night", "weekend", "holiday", "closed", "paused"]
WAITING = "waiting on the customer"


class Segment(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: SegmentKind
    start: AwareDatetime
    end: AwareDatetime
    label: str

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


def _day_pieces(
    cal: BusinessCalendar,
    day_start: datetime,
    day_end: datetime,
    status: tuple[DayKind, str] | None,
) -> list[tuple[SegmentKind, datetime, datetime, str]]:
    day = day_start.astimezone(cal.zone).date()
    if status is not None:
        kind, label = status
        return [(kind, day_start, day_end, label)]
    pieces: list[tuple[SegmentKind, datetime, datetime, str]] = []
    cursor = day_start
    for open_at, close_at in open_intervals(cal, day):
        if cursor < open_at:
            if pieces:
                pieces.append(("closed", cursor, open_at, "break"))
            else:
                pieces.append(("night", cursor, open_at, "outside hours"))
        local_open, local_close = open_at.astimezone(cal.zone), close_at.astimezone(cal.zone)
        close_text = "24:00" if local_close.date() > day else f"{local_close:%H:%M}"
        label = f"{local_open:%a %Y-%m-%d %H:%M}-{close_text}"
        pieces.append(("counted", open_at, close_at, label))
        cursor = close_at
    if cursor < day_end:
        pieces.append(("night", cursor, day_end, "outside hours"))
    return pieces


def explain_span(cal: BusinessCalendar, start: datetime, end: datetime) -> list[Segment]:
    """Cut [start, end] into counted and skipped segments (empty if end <= start)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end must be timezone-aware")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return []
    if cal.always_open:
        return [Segment(kind="counted", start=start, end=end, label="24/7")]
    segments: list[Segment] = []
    day = start.astimezone(cal.zone).date()
    while (day_start := local_midnight(cal, day)) < end:
        day_end = local_midnight(cal, day + timedelta(days=1))
        for kind, a, b, label in _day_pieces(cal, day_start, day_end, day_status(cal, day)):
            a, b = max(a, start), min(b, end)
            if b <= a:
                continue
            last = segments[-1] if segments else None
            if last is not None and last.kind == kind and last.label == label and last.end == a:
                segments[-1] = last.model_copy(update={"end": b})
            else:
                segments.append(Segment(kind=kind, start=a, end=b, label=label))
        day += timedelta(days=1)
    return segments


def cut_pauses(
    segments: list[Segment], pauses: list[tuple[datetime, datetime | None]]
) -> list[Segment]:
    """`segments` with the counted time inside a pause (end None: still paused, to the
    end of the span) relabelled `paused`; only open hours are cut, so what a pause
    overlapped outside hours stays night, weekend or holiday."""
    out = segments
    for p_start, p_end in pauses:
        cut: list[Segment] = []
        for seg in out:
            a, b = max(seg.start, p_start), seg.end if p_end is None else min(seg.end, p_end)
            if seg.kind != "counted" or b <= a:
                cut.append(seg)
                continue
            if seg.start < a:
                cut.append(seg.model_copy(update={"end": a}))
            cut.append(Segment(kind="paused", start=a, end=b, label=WAITING))
            if b < seg.end:
                cut.append(seg.model_copy(update={"start": b}))
        out = cut
    return out
