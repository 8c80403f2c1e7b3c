"""Duration and budget strings used in the policy file.

A *duration* is hours, minutes and seconds in that order, each optional but at least one
present: `30m`, `1h`, `8h30m`, `90s`, `1h 5m 30s`. Days (`1d`) are rejected on purpose:
"a day" is ambiguous between 24 hours and a business day; write `24h` or `1 business_day`.

A *budget* is either a duration (business time on the rule's calendar) or `N business_day`
/ `N business_days` (see `services.sla_timer.calendar.add_business_days`).
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator

from services.common.durations import format_duration, parse_duration

__all__ = ["Budget", "format_duration", "parse_duration"]

_BUSINESS_DAYS = re.compile(r"^\s*(\d+)\s+business[_ ]days?\s*$")


class Budget(BaseModel):
    """How long the clock runs: a business-time duration or a number of business days.

    Written in the policy file as a string (`30m`, `1 business_day`); exactly one of the
    two fields is set.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    duration: timedelta | None = None
    business_days: int | None = None

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, value: Any) -> Any:
        if isinstance(value, dict | Budget):
            return value
        if isinstance(value, str) and (m := _BUSINESS_DAYS.match(value)):
            return {"business_days": int(m.group(1))}
        return {"duration": parse_duration(value)}

    @model_validator(mode="after")
    def _one(self) -> Budget:
        if (self.duration is None) == (self.business_days is None):
            raise ValueError("a budget is either a duration or a number of business days")
        if self.duration is not None and self.duration <= timedelta(0):
            raise ValueError("a budget must be longer than zero")
        if self.business_days is not None and self.business_days < 1:
            raise ValueError("a budget needs at least 1 business_day")
        return self

    def __str__(self) -> str:
        if self.duration is not None:
            return format_duration(self.duration)
        n = self.business_days
        return f"{n} business_day{'s' if n != 1 else ''}"
