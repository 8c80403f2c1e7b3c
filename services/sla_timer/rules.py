"""The SLA policy as pydantic models (the policy file's shape; loading is in `policy`).

A policy has a `version` (pinned into every clock), named `calendars` and an ordered
list of `rules`. Each rule is for one or more `metric`s (first_response when absent: the
policies from before there were several). For each metric, the first rule of that metric
whose `match` fits a ticket decides its clock; a rule with `clock: false` (or no
matching rule at all) means no clock of that metric.
"""

from __future__ import annotations

import datetime as dt
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from schemas.events import METRICS, Metric
from schemas.inbound import Severity
from schemas.ticket import CallKind, Channel, SubmitterRole
from services.sla_timer.calendar import BusinessCalendar, LocatedError
from services.sla_timer.durations import Budget, format_duration, parse_duration

ClockKind = Literal["guaranteed", "target"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Match(_Model):
    """Every criterion given must hold; a scalar is shorthand for a one-element list."""

    channel: list[Channel] | None = None
    role: list[SubmitterRole] | None = None
    severity: list[Severity] | None = None
    call_kind: list[CallKind] | None = None
    premium: bool | None = None

    @field_validator("channel", "role", "severity", "call_kind", mode="before")
    @classmethod
    def _listify(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def matches(
        self,
        *,
        channel: Channel,
        role: SubmitterRole,
        severity: Severity,
        call_kind: CallKind | None,
        premium: bool,
    ) -> bool:
        return (
            (self.channel is None or channel in self.channel)
            and (self.role is None or role in self.role)
            and (self.severity is None or severity in self.severity)
            and (self.call_kind is None or (call_kind is not None and call_kind in self.call_kind))
            and (self.premium is None or premium == self.premium)
        )


class Warn(_Model):
    """When to warn: after `fraction` of the budget, or `before` the due (business time)."""

    fraction: float | None = Field(default=None, gt=0, lt=1)
    before: timedelta | None = None

    @field_validator("before", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @model_validator(mode="after")
    def _exactly_one(self) -> Warn:
        if (self.fraction is None) == (self.before is None):
            raise ValueError("warn takes exactly one of 'fraction' or 'before'")
        if self.before is not None and self.before <= timedelta(0):
            raise LocatedError(("before",), "must be longer than zero")
        return self


class Rule(_Model):
    name: str = Field(min_length=1)
    metric: tuple[Metric, ...] = ("first_response",)
    match: Match = Field(default_factory=Match)
    clock: bool = True
    budget: Budget | None = None
    calendar: str | None = None
    kind: ClockKind | None = None
    warn: Warn | None = None
    # While the helpdesk waits on the customer the clock stops (only the business time
    # the wait overlapped is given back), and a customer reply ends the wait.
    pause: bool = True
    resume_on_reply: bool = True

    @field_validator("metric", mode="before")
    @classmethod
    def _metrics(cls, value: Any) -> Any:
        if value == "all":
            return METRICS
        return [value] if isinstance(value, str) else value

    def applies_to(self, metric: Metric) -> bool:
        return metric in self.metric

    @model_validator(mode="after")
    def _complete(self) -> Rule:
        settings = ("budget", "calendar", "kind", "warn")
        if not self.clock:
            for key in settings:
                if getattr(self, key) is not None:
                    raise LocatedError((key,), f"a rule with clock: false takes no {key}")
            return self
        for key in settings[:3]:
            if getattr(self, key) is None:
                raise LocatedError((key,), f"missing key '{key}' (rule {self.name!r} has a clock)")
        duration = self.budget.duration if self.budget else None
        before = self.warn.before if self.warn else None
        if duration is not None and before is not None and before >= duration:
            raise LocatedError(
                ("warn", "before"),
                f"warn before {format_duration(before)} must be shorter than the budget "
                f"{format_duration(duration)}",
            )
        return self


class Policy(_Model):
    version: str = Field(min_length=1)
    calendars: dict[str, BusinessCalendar]
    rules: list[Rule]

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return value.isoformat() if isinstance(value, dt.date) else value

    @field_validator("calendars", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {
            key: {"name": key, **cal} if isinstance(cal, dict) and "name" not in cal else cal
            for key, cal in value.items()
        }

    @model_validator(mode="after")
    def _references(self) -> Policy:
        for key, cal in self.calendars.items():
            if cal.name != key:
                raise LocatedError(("calendars", key, "name"), f"name must be {key!r} or absent")
        seen: set[str] = set()
        for i, rule in enumerate(self.rules):
            if rule.name in seen:
                raise LocatedError(("rules", i, "name"), f"duplicate rule name {rule.name!r}")
            seen.add(rule.name)
            if rule.calendar is not None and rule.calendar not in self.calendars:
                known = ", ".join(sorted(self.calendars)) or "none"
                raise LocatedError(
                    ("rules", i, "calendar"),
                    f"unknown calendar {rule.calendar!r} (known: {known})",
                )
        return self

    def calendar(self, name: str) -> BusinessCalendar:
        return self.calendars[name]
