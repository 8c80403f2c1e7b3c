"""The SLA policy: load the policy file, pick a rule for a ticket, compute its deadlines.

Budgets (see `durations`): a duration (`30m`, `1h`, `8h30m`) is *business time* on the
rule's calendar (plain absolute time on a 24/7 calendar). `N business_day(s)` means: the
same local wall-clock time as the start of counting, N open days later (weekends,
holidays and closed dates skipped), kept within that day's opening hours; see
`calendar.add_business_days` for the exact rule. Example with Mon-Fri 09:00-17:30:
created Fri 16:00 -> due Mon 16:00; created Sat 11:00 -> counting starts Mon 09:00 ->
due Tue 09:00. DST does not move it: it stays 16:00 local.

Warnings, also in business time: `{fraction: f}` warns once f of the budget's business
time has passed; `{before: 10m}` warns 10 minutes of business time before the due (so a
due at Mon 09:05 warns Fri 17:25). A warning never precedes the start of counting.

The clock starts at the ticket's create time. Recomputing after a reclassification is
calling `compute_deadlines` again with the new severity and the ORIGINAL `started_at`.
The deadlines of a ticket that arrives late may already be in the past; firing is the
caller's business.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path

from schemas.events import Metric
from schemas.inbound import Severity
from schemas.ticket import CallKind, Channel, SubmitterRole, Ticket
from services.runtime.yaml_files import ConfigFileError, YamlInvalid, validate_yaml
from services.sla_timer.calendar import (
    add_business_days,
    add_business_time,
    business_time_between,
    subtract_business_time,
)
from services.sla_timer.rules import Match, Policy, Rule, Warn

__all__ = [
    "Deadlines",
    "Match",
    "Policy",
    "PolicyError",
    "Rule",
    "Warn",
    "compute_deadlines",
    "deadlines_for_ticket",
    "default_policy_text",
    "load_policy",
    "match_rule",
    "parse_policy",
    "policy_hash",
]

DEFAULT_POLICY = "default_policy.yaml"
_PACKAGE = "services.sla_timer"


class PolicyError(ConfigFileError):
    """A policy file that cannot be used; the message names the file and the line."""


@dataclass(frozen=True)
class Deadlines:
    rule: str
    guaranteed: bool
    calendar: str
    started_at: datetime
    due_at: datetime
    warn_at: datetime | None
    policy_version: str
    metric: Metric = "first_response"
    pause: bool = True
    resume_on_reply: bool = True


def default_policy_text() -> str:
    return resources.files(_PACKAGE).joinpath(DEFAULT_POLICY).read_text(encoding="utf-8")


def _read(path: Path | str | None) -> tuple[str, str]:
    if path is None:
        return default_policy_text(), str(resources.files(_PACKAGE).joinpath(DEFAULT_POLICY))
    try:
        return Path(path).read_text(encoding="utf-8"), str(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise PolicyError(str(path), [(None, f"cannot read the policy file: {exc}")]) from None


def load_policy(path: Path | str | None = None) -> Policy:
    """Load and validate a policy file (None: the packaged default)."""
    text, source = _read(path)
    return parse_policy(text, source)


def policy_hash(path: Path | str | None = None) -> str:
    """A stable fingerprint of the policy file's content: `sha256:<hex>`."""
    text, _ = _read(path)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    """Validate policy YAML text; `source` names it in errors."""
    try:
        return validate_yaml(Policy, text, "a mapping with version, calendars, rules")
    except YamlInvalid as exc:
        raise PolicyError(source, exc.problems) from None


def match_rule(
    policy: Policy,
    *,
    channel: Channel,
    role: SubmitterRole,
    severity: Severity,
    call_kind: CallKind | None,
    premium: bool,
    metric: Metric = "first_response",
) -> Rule | None:
    """The first rule of `metric` whose match fits, or None."""
    for rule in policy.rules:
        if rule.applies_to(metric) and rule.match.matches(
            channel=channel, role=role, severity=severity, call_kind=call_kind, premium=premium
        ):
            return rule
    return None


def compute_deadlines(
    policy: Policy,
    *,
    channel: Channel,
    role: SubmitterRole,
    severity: Severity,
    call_kind: CallKind | None,
    premium: bool,
    started_at: datetime,
    metric: Metric = "first_response",
) -> Deadlines | None:
    """The clock of `metric` for these facts, or None when the first matching rule of
    that metric has no clock."""
    if started_at.tzinfo is None or started_at.utcoffset() is None:
        raise ValueError(f"started_at must be timezone-aware, got {started_at!r}")
    rule = match_rule(
        policy,
        channel=channel,
        role=role,
        severity=severity,
        call_kind=call_kind,
        premium=premium,
        metric=metric,
    )
    if rule is None or not rule.clock:
        return None
    assert rule.budget is not None and rule.calendar is not None  # guaranteed by Rule
    cal = policy.calendars[rule.calendar]
    started = started_at.astimezone(UTC)
    if rule.budget.duration is not None:
        due = add_business_time(cal, started, rule.budget.duration)
    else:
        due = add_business_days(cal, started, rule.budget.business_days or 1)
    warn_at: datetime | None = None
    if rule.warn is not None:
        if rule.warn.fraction is not None:
            total = business_time_between(cal, started, due)
            warn_at = add_business_time(cal, started, total * rule.warn.fraction)
        elif rule.warn.before is not None:
            counting = add_business_time(cal, started, timedelta(0))
            warn_at = max(subtract_business_time(cal, due, rule.warn.before), counting)
    return Deadlines(
        rule=rule.name,
        guaranteed=rule.kind == "guaranteed",
        calendar=rule.calendar,
        started_at=started,
        due_at=due,
        warn_at=warn_at,
        policy_version=policy.version,
        metric=metric,
        pause=rule.pause,
        resume_on_reply=rule.resume_on_reply,
    )


def deadlines_for_ticket(
    policy: Policy, ticket: Ticket, *, severity: Severity | None = None
) -> Deadlines | None:
    """`compute_deadlines` for a ticket; pass `severity` after a reclassification."""
    return compute_deadlines(
        policy,
        channel=ticket.channel,
        role=ticket.submitter.role,
        severity=severity or ticket.severity,
        call_kind=ticket.call_kind,
        premium=ticket.premium,
        started_at=ticket.created_at,
    )
