"""Business calendar models: weekly local opening hours, holidays, closed dates.

Opening hours are local wall-clock intervals per weekday. For each local date the
intervals are converted to UTC *for that date* (zoneinfo, fold=0: a nonexistent local
time in the spring-forward gap moves forward by the gap, an ambiguous one in the
fall-back hour means its first occurrence), so DST never shifts a deadline's wall-clock
time. Intervals are half-open: a calendar is open at 09:00, not at 17:30, but a budget that
runs out exactly at closing time is due at 17:30, not at the next opening.

An `always_open` calendar is 24/7 and all arithmetic is plain absolute time (UTC).
The arithmetic over these models is in `services.sla_timer.calendar`.
"""

from __future__ import annotations

import functools
import itertools
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

from services.common.weekdays import WEEKDAYS, Weekday
from services.runtime.yaml_files import LocatedError

DayKind = Literal["weekend", "holiday", "closed"]
_HHMM = re.compile(r"^(\d{1,2}):([0-5]\d)$")


class Interval(BaseModel):
    """Open from `start` to `end`, local wall-clock `HH:MM`; `end` may be `24:00`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    start: str
    end: str

    @field_validator("start", "end", mode="before")
    @classmethod
    def _hhmm(cls, value: Any) -> str:
        if isinstance(value, time):
            return value.strftime("%H:%M")
        m = _HHMM.match(value) if isinstance(value, str) else None
        if m is None or int(m.group(1)) > 24 or (int(m.group(1)) == 24 and m.group(2) != "00"):
            raise ValueError(f"expected a local time as a quoted 'HH:MM' string, got {value!r}")
        return f"{int(m.group(1)):02d}:{m.group(2)}"

    @model_validator(mode="after")
    def _ordered(self) -> Interval:
        if self.start_minute >= self.end_minute:
            raise ValueError(f"start {self.start} must be before end {self.end}")
        return self

    @property
    def start_minute(self) -> int:
        return int(self.start[:2]) * 60 + int(self.start[3:])

    @property
    def end_minute(self) -> int:
        return int(self.end[:2]) * 60 + int(self.end[3:])


class HolidaySource(BaseModel):
    """Public holidays from the `holidays` package: ISO country code, optional subdivision."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    country: str
    subdiv: str | None = None

    @model_validator(mode="after")
    def _known(self) -> HolidaySource:
        try:
            _holiday_table(self.country, self.subdiv)
        except NotImplementedError as exc:
            raise ValueError(str(exc)) from None
        return self


@functools.lru_cache(maxsize=64)
def _holiday_table(country: str, subdiv: str | None) -> holidays_lib.HolidayBase:
    return holidays_lib.country_holidays(country, subdiv=subdiv)


class BusinessCalendar(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    timezone: str = "UTC"
    always_open: bool = Field(default=False, description="24/7: plain absolute time")
    hours: dict[Weekday, list[Interval]] = Field(default_factory=dict)
    holidays: HolidaySource | None = None
    closed_dates: list[date] = Field(default_factory=list)

    _zone: ZoneInfo = PrivateAttr()
    _week: tuple[tuple[tuple[int, int], ...], ...] = PrivateAttr()
    _closed: frozenset[date] = PrivateAttr()

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA time zone {value!r}") from None
        return value

    @model_validator(mode="after")
    def _consistent(self) -> BusinessCalendar:
        if self.always_open:
            for key in ("hours", "holidays", "closed_dates"):
                if getattr(self, key):
                    raise LocatedError((key,), f"an always_open (24/7) calendar takes no {key}")
            return self
        if not any(self.hours.values()):
            raise LocatedError(("hours",), "no opening hours (use always_open: true for 24/7)")
        for day, intervals in self.hours.items():
            order = sorted(range(len(intervals)), key=lambda i: intervals[i].start_minute)
            for prev, cur in itertools.pairwise(order):
                if intervals[cur].start_minute < intervals[prev].end_minute:
                    raise LocatedError(
                        ("hours", day, cur),
                        f"{day}: {intervals[cur].start}-{intervals[cur].end} overlaps "
                        f"{intervals[prev].start}-{intervals[prev].end}",
                    )
        return self

    def model_post_init(self, context: Any, /) -> None:
        self._zone = ZoneInfo(self.timezone)
        self._week = tuple(
            tuple(sorted((iv.start_minute, iv.end_minute) for iv in self.hours.get(day, [])))
            for day in WEEKDAYS
        )
        self._closed = frozenset(self.closed_dates)

    @property
    def zone(self) -> ZoneInfo:
        return self._zone


def day_status(cal: BusinessCalendar, day: date) -> tuple[DayKind, str] | None:
    """None if `day` (a local date) has opening hours, else why it is closed and a label."""
    if cal.always_open:
        return None
    if day in cal._closed:
        return ("closed", "closed")
    if cal.holidays is not None:
        name = _holiday_table(cal.holidays.country, cal.holidays.subdiv).get(day)
        if name:
            return ("holiday", name)
    if not cal._week[day.weekday()]:
        return ("weekend", "weekend")
    return None


def local_midnight(cal: BusinessCalendar, day: date) -> datetime:
    """The UTC instant at which local date `day` begins."""
    return wall_to_utc(cal, day, 0)


def wall_to_utc(cal: BusinessCalendar, day: date, minute: int) -> datetime:
    if minute >= 24 * 60:
        day, minute = day + timedelta(days=1), minute - 24 * 60
    local = datetime.combine(day, time(minute // 60, minute % 60), tzinfo=cal.zone)
    return local.astimezone(UTC)


def open_intervals(cal: BusinessCalendar, day: date) -> list[tuple[datetime, datetime]]:
    """The open intervals of local date `day` as sorted, non-overlapping UTC pairs."""
    if day_status(cal, day) is not None:
        return []
    out: list[tuple[datetime, datetime]] = []
    for start_min, end_min in cal._week[day.weekday()]:
        start, end = wall_to_utc(cal, day, start_min), wall_to_utc(cal, day, end_min)
        if out and start < out[-1][1]:  # only possible around a DST gap
            start = out[-1][1]
        if end > start:
            out.append((start, end))
    return out
