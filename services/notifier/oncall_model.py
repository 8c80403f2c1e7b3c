"""The on-call file (`ONCALL_FILE`) as pydantic models; loading and lookups are in `oncall`,
the team channel and the when-to-notify rules in `oncall_rules`.

- `people`: who can be reached, and how (email is required; chat, paging and generic
  webhooks, a console echo and a phone number for display are optional), and each
  person's time zone (deadlines in their messages are shown in it).
- `schedules`: weekly rotations in a time zone. `rotation[0]` is on from the local
  hand-off instant (`handoff.weekday` at `handoff.hour`, wall clock) of the `start` date,
  which must be a hand-off weekday; every `shift_weeks` weeks the next person takes over,
  wrapping around. An optional `end` date stops the rotation at that date's hand-off hour.
  `overrides` (holiday swaps) put a person on for `[start, end)` instead of whoever the
  rotation says (also where the rotation has nobody); naive datetimes are local to the
  schedule's zone. Overrides of one schedule must not overlap.
- `escalation`: levels 1..n, each the people on its `schedules` plus fixed `people`
  (level 2 by default: the secondary schedule and the support manager).
- `team_channel`: a chat webhook for non-urgent notices, grouped into a digest at most
  every `digest_interval`.
- `notify`: when to notify whom (defaults below, from the issue), `channels`: which
  contact methods a page, a reminder and a notice use.
- `link_template`: the ticket link, e.g. `https://helpdesk.example/tickets/{ticket_id}`
  (placeholders: `ticket_id`, `portal_id`).
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import Field, PrivateAttr, field_validator, model_validator

from services.common.durations import format_duration, parse_duration
from services.common.weekdays import WEEKDAYS, Weekday
from services.notifier.oncall_rules import (
    TEAM,
    Channels,
    ContactChannel,
    FileModel,
    NotifyRules,
    PersonId,
    TeamChannel,
    Url,
    Zone,
    check_url,
)
from services.runtime.yaml_files import LocatedError

_EMAIL = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+$")


class PagingWebhook(FileModel):
    """A PagerDuty Events API v2 compatible endpoint and the integration's routing key."""

    url: Url
    routing_key: str = Field(min_length=1)


class GenericWebhook(FileModel):
    """A JSON webhook signed with HMAC-SHA256; the secret is read from env var `secret_env`."""

    url: Url
    secret_env: str | None = Field(default=None, pattern=r"^[A-Z_][A-Z0-9_]*$")


class Person(FileModel):
    id: PersonId
    name: str = Field(min_length=1)
    email: str
    chat_webhook: Url | None = None
    paging_webhook: PagingWebhook | None = None
    generic_webhook: GenericWebhook | None = None
    console: bool = Field(default=False, description="Also print their notifications")
    phone: str | None = Field(default=None, description="For display only")
    timezone: Zone = "UTC"

    @field_validator("id")
    @classmethod
    def _not_team(cls, value: str) -> str:
        if value == TEAM:
            raise ValueError(f"{TEAM!r} is reserved for the team channel")
        return value

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        if not _EMAIL.match(value):
            raise ValueError(f"expected an email address like kim@example.com, got {value!r}")
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def has(self, channel: ContactChannel) -> bool:
        if channel == "email":
            return True
        if channel == "console":
            return self.console
        return getattr(self, channel) is not None


class Handoff(FileModel):
    """The weekly hand-off: local wall-clock `hour` on `weekday` (DST does not move it)."""

    weekday: Weekday
    hour: int = Field(ge=0, le=23)


class Override(FileModel):
    """`person` is on call for `[start, end)` in place of whoever the rotation says."""

    start: datetime
    end: datetime
    person: PersonId
    note: str | None = None


class Schedule(FileModel):
    name: str
    timezone: Zone
    rotation: list[PersonId] = Field(min_length=1)
    handoff: Handoff
    start: date = Field(description="The date rotation[0] takes over; a hand-off weekday")
    shift_weeks: int = Field(default=1, ge=1)
    end: date | None = None
    overrides: list[Override] = Field(default_factory=list)

    _spans: tuple[tuple[datetime, datetime, str], ...] = PrivateAttr()

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def handoff_at(self, day: date) -> datetime:
        """The UTC instant of the hand-off hour on local date `day` (zoneinfo, fold=0)."""
        local = datetime.combine(day, time(self.handoff.hour), tzinfo=self.zone)
        return local.astimezone(UTC)

    def aware(self, value: datetime) -> datetime:
        """`value` in UTC; a naive datetime is local wall-clock time of this schedule."""
        if value.tzinfo is None or value.utcoffset() is None:
            value = value.replace(tzinfo=self.zone)
        return value.astimezone(UTC)

    @property
    def override_spans(self) -> tuple[tuple[datetime, datetime, str], ...]:
        """The overrides as sorted `(start, end, person)` UTC triples."""
        return self._spans

    @model_validator(mode="after")
    def _consistent(self) -> Schedule:
        want = WEEKDAYS.index(self.handoff.weekday)
        if self.start.weekday() != want:
            raise LocatedError(
                ("start",),
                f"start {self.start} is a {WEEKDAYS[self.start.weekday()]}; it must be the "
                f"hand-off weekday ({self.handoff.weekday})",
            )
        if self.end is not None and self.end <= self.start:
            raise LocatedError(("end",), f"end {self.end} must be after start {self.start}")
        spans = []
        for i, o in enumerate(self.overrides):
            start, end = self.aware(o.start), self.aware(o.end)
            if start >= end:
                raise LocatedError(("overrides", i), f"override start {o.start} is not before end")
            spans.append((start, end, o.person, i))
        spans.sort()
        for prev, cur in itertools.pairwise(spans):
            if cur[0] < prev[1]:
                raise LocatedError(
                    ("overrides", cur[3]),
                    f"override {cur[3] + 1} ({cur[2]}) overlaps override {prev[3] + 1} ({prev[2]})",
                )
        self._spans = tuple((s, e, p) for s, e, p, _ in spans)
        return self


class Level(FileModel):
    level: int = Field(ge=1)
    schedules: list[str] = Field(default_factory=list)
    people: list[PersonId] = Field(default_factory=list, description="e.g. the support manager")

    @model_validator(mode="after")
    def _someone(self) -> Level:
        if not self.schedules and not self.people:
            raise ValueError("a level needs at least one schedule or person")
        return self


class OnCall(FileModel):
    version: str | None = None
    people: list[Person] = Field(min_length=1)
    schedules: dict[str, Schedule] = Field(default_factory=dict)
    escalation: list[Level] = Field(min_length=1)
    team_channel: TeamChannel | None = None
    digest_interval: timedelta = timedelta(minutes=5)
    link_template: str | None = None
    notify: NotifyRules = Field(default_factory=NotifyRules)
    channels: Channels = Field(default_factory=Channels)

    _people: dict[str, Person] = PrivateAttr()
    _levels: dict[int, Level] = PrivateAttr()

    @field_validator("version", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        return value.isoformat() if isinstance(value, date) else value

    @field_validator("schedules", mode="before")
    @classmethod
    def _names(cls, value: Any) -> Any:
        if not isinstance(value, dict):
            return value
        return {k: {"name": k, **v} if isinstance(v, dict) else v for k, v in value.items()}

    @field_validator("digest_interval", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> timedelta:
        interval = parse_duration(value)
        if interval <= timedelta(0):
            raise ValueError(f"must be longer than zero, got {format_duration(interval)}")
        return interval

    @field_validator("link_template")
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            link = value.format(ticket_id="T-email-0123456789abcdef", portal_id=4411)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValueError(
                f"bad link template {value!r} ({exc!r}); placeholders: {{ticket_id}}, {{portal_id}}"
            ) from None
        check_url(link)
        return value

    @model_validator(mode="after")
    def _references(self) -> OnCall:
        self._people = {}
        for i, p in enumerate(self.people):
            if p.id in self._people:
                raise LocatedError(("people", i, "id"), f"duplicate person id {p.id!r}")
            self._people[p.id] = p
        for key, s in self.schedules.items():
            if s.name != key:
                raise LocatedError(("schedules", key, "name"), f"name must be {key!r} or absent")
            for i, pid in enumerate(s.rotation):
                self._known(pid, ("schedules", key, "rotation", i))
            for i, o in enumerate(s.overrides):
                self._known(o.person, ("schedules", key, "overrides", i, "person"))
        self._levels = {}
        for i, lv in enumerate(self.escalation):
            if lv.level != i + 1:
                raise LocatedError(
                    ("escalation", i, "level"), f"levels must be 1, 2, ... in order; got {lv.level}"
                )
            self._levels[lv.level] = lv
            for j, name in enumerate(lv.schedules):
                if name not in self.schedules:
                    raise LocatedError(
                        ("escalation", i, "schedules", j), f"unknown schedule {name!r}"
                    )
            for j, pid in enumerate(lv.people):
                self._known(pid, ("escalation", i, "people", j))
        for path, rule in self.notify.checked():
            for j, level in enumerate(rule.levels):
                if level not in self._levels:
                    raise LocatedError(
                        ("notify", *path, "levels", j), f"no escalation level {level}"
                    )
            if rule.team and self.team_channel is None:
                raise LocatedError(("notify", *path, "team"), "needs a team_channel")
        return self

    def _known(self, pid: str, loc: tuple[str | int, ...]) -> None:
        if pid not in self._people:
            raise LocatedError(loc, f"unknown person {pid!r}")

    def person(self, pid: str) -> Person | None:
        return self._people.get(pid)

    def level(self, number: int) -> Level:
        try:
            return self._levels[number]
        except KeyError:
            raise ValueError(f"no escalation level {number} in the on-call file") from None
