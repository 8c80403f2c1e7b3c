"""Load the on-call file and answer "who is on call at instant T" (pure; `at` is passed in).

The file's shape and rules are in `services.notifier.oncall_model`. Hand-offs happen at
the local wall-clock hour in the schedule's zone, converted per date with zoneinfo
(fold=0: an hour in the spring-forward gap moves forward by the gap, an hour that occurs
twice in the fall-back means its first occurrence), so DST never moves a hand-off's
wall-clock time; a shift that spans a DST change is an hour longer or shorter.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.common.weekdays import WEEKDAYS
from services.notifier.oncall_model import (
    GenericWebhook,
    Handoff,
    Level,
    OnCall,
    Override,
    PagingWebhook,
    Person,
    Schedule,
)
from services.notifier.oncall_rules import TEAM, Channels, NotifyRule, NotifyRules, TeamChannel
from services.runtime.yaml_files import ConfigFileError, YamlInvalid, validate_yaml

__all__ = [
    "TEAM",
    "Channels",
    "GenericWebhook",
    "Handoff",
    "Level",
    "NotifyRule",
    "NotifyRules",
    "OnCall",
    "OnCallError",
    "Override",
    "PagingWebhook",
    "Person",
    "Schedule",
    "TeamChannel",
    "coverage_gaps",
    "email_needed",
    "load_oncall",
    "parse_oncall",
    "scheduled_person",
    "unset_secrets",
    "who_is_on_call",
]


class OnCallError(ConfigFileError):
    """An on-call file that cannot be used; the message names the file and the line."""


def load_oncall(path: Path | str) -> OnCall:
    """Read and validate the on-call file; OnCallError names the file, line and problem."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise OnCallError(str(path), [(None, f"cannot read the on-call file: {exc}")]) from None
    return parse_oncall(text, str(path))


def parse_oncall(text: str, source: str = "<oncall>") -> OnCall:
    """Validate on-call YAML text; `source` names it in errors."""
    try:
        return validate_yaml(OnCall, text, "a mapping with people, schedules, escalation")
    except YamlInvalid as exc:
        raise OnCallError(source, exc.problems) from None


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"expected a timezone-aware datetime, got {value!r}")
    return value.astimezone(UTC)


def scheduled_person(schedule: Schedule, at: datetime) -> str | None:
    """The id of who is on `schedule` at `at` (overrides first), or None if nobody."""
    at = _utc(at)
    for start, end, person in schedule.override_spans:
        if start <= at < end:
            return person
    if at < schedule.handoff_at(schedule.start):
        return None
    if schedule.end is not None and at >= schedule.handoff_at(schedule.end):
        return None
    day = at.astimezone(schedule.zone).date()
    last = day - timedelta(days=(day.weekday() - WEEKDAYS.index(schedule.handoff.weekday)) % 7)
    if schedule.handoff_at(last) > at:
        last -= timedelta(days=7)
    shift = (last - schedule.start).days // 7 // schedule.shift_weeks
    return schedule.rotation[shift % len(schedule.rotation)]


def who_is_on_call(oncall: OnCall, level: int, at: datetime) -> list[Person]:
    """The people on call at escalation `level` at instant `at`: whoever is on each of the
    level's schedules, then its fixed people; each person once, in that order."""
    lv = oncall.level(level)
    ids = [scheduled_person(oncall.schedules[name], at) for name in lv.schedules]
    out: list[Person] = []
    for pid in [*ids, *lv.people]:
        person = oncall.person(pid) if pid is not None else None
        if person is not None and person not in out:
            out.append(person)
    return out


def _boundaries(schedule: Schedule, start: datetime, end: datetime) -> set[datetime]:
    """Every instant in (start, end) at which who is on `schedule` may change."""
    points = {schedule.handoff_at(schedule.start)}
    if schedule.end is not None:
        points.add(schedule.handoff_at(schedule.end))
    for s, e, _ in schedule.override_spans:
        points |= {s, e}
    day = start.astimezone(schedule.zone).date() - timedelta(days=1)
    last = end.astimezone(schedule.zone).date() + timedelta(days=1)
    want = WEEKDAYS.index(schedule.handoff.weekday)
    while day <= last:
        if day.weekday() == want:
            points.add(schedule.handoff_at(day))
        day += timedelta(days=1)
    return {p for p in points if start < p < end}


def coverage_gaps(
    oncall: OnCall, start: datetime, days: int = 7
) -> list[tuple[datetime, datetime]]:
    """The UTC `(start, end)` spans within `days` from `start` in which nobody is on call
    at level 1, merged and in order; empty when level 1 is always covered."""
    begin = _utc(start)
    finish = begin + timedelta(days=days)
    level = oncall.level(1)
    if level.people:
        return []
    points = {begin, finish}
    for name in level.schedules:
        points |= _boundaries(oncall.schedules[name], begin, finish)
    ordered = sorted(points)
    gaps: list[tuple[datetime, datetime]] = []
    for a, b in itertools.pairwise(ordered):
        if who_is_on_call(oncall, 1, a):
            continue
        if gaps and gaps[-1][1] == a:
            gaps[-1] = (gaps[-1][0], b)
        else:
            gaps.append((a, b))
    return gaps


# -- what a first send needs beside the file (`premium-support oncall check`) ----------


def email_needed(oncall: OnCall) -> bool:
    """Whether some message goes to someone by email: email is in the order of a kind of
    message, or a person has none of that kind's methods (email is then the one used)."""
    return any(
        "email" in ([c for c in oncall.channels.of(kind) if person.has(c)] or ["email"])
        for person in oncall.people
        for kind in ("page", "remind", "notify")
    )


def unset_secrets(oncall: OnCall, secret: Callable[[str], str | None]) -> list[str]:
    """One line per signed webhook whose secret `secret(variable)` does not give: its first
    send would fail (an empty key signs nothing)."""
    problems = []
    for person in oncall.people:
        hook = person.generic_webhook
        if hook is None:
            continue
        if hook.secret_env is None:
            problems.append(f"{person.id}: generic_webhook has no secret_env")
        elif not secret(hook.secret_env):
            problems.append(
                f"{person.id}: generic_webhook's secret is not set "
                f"({hook.secret_env} or {hook.secret_env}_FILE)"
            )
    return problems
