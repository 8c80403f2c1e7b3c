"""The SLA policy: the default file against DESIGN.md's table, rule order, deadlines, errors."""

from __future__ import annotations

import dataclasses
import itertools
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from schemas.inbound import Severity
from schemas.ticket import CallKind, Channel, Submitter, SubmitterRole, Ticket
from services.sla_timer.policy import (
    Deadlines,
    Policy,
    PolicyError,
    compute_deadlines,
    deadlines_for_ticket,
    load_policy,
    match_rule,
    parse_policy,
    policy_hash,
)

ROOT = Path(__file__).resolve().parents[2]
AMS = ZoneInfo("Europe/Amsterdam")
START = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)  # Friday 16:00 in Amsterdam
M = timedelta(minutes=1)


@pytest.fixture(scope="module")
def policy() -> Policy:
    return load_policy()


def ams(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, s, tzinfo=AMS)


def deadlines(
    policy: Policy,
    channel: Channel,
    role: SubmitterRole,
    severity: Severity = "standard",
    call_kind: CallKind | None = None,
    premium: bool = True,
    started_at: datetime = START,
) -> Deadlines | None:
    return compute_deadlines(
        policy,
        channel=channel,
        role=role,
        severity=severity,
        call_kind=call_kind,
        premium=premium,
        started_at=started_at,
    )


# --- the default policy is DESIGN.md section 2 ----------------------------------------


def test_default_policy_loads(policy: Policy) -> None:
    assert policy.version == "2026-11-01"
    assert policy.calendars["always"].always_open
    hours = policy.calendars["support-hours"]
    assert hours.timezone == "Europe/Amsterdam"
    assert hours.holidays is not None and hours.holidays.country == "NL"
    assert set(hours.hours) == {"mon", "tue", "wed", "thu", "fri"}


def test_email_super_admin_business_critical_is_30m_guaranteed_24_7(policy: Policy) -> None:
    d = deadlines(policy, "email", "super_admin", "business_critical")
    assert d is not None
    assert (d.guaranteed, d.calendar, d.policy_version) == (True, "always", "2026-11-01")
    assert d.due_at == START + 30 * M
    assert d.warn_at == START + 20 * M


def test_email_super_admin_standard_is_1h_guaranteed_24_7(policy: Policy) -> None:
    sat_night = datetime(2026, 11, 28, 23, 30, tzinfo=UTC)
    d = deadlines(policy, "email", "super_admin", started_at=sat_night)
    assert d is not None and d.guaranteed
    assert d.due_at == sat_night + 60 * M


@pytest.mark.parametrize("role", ["super_admin", "user", "unknown"])
@pytest.mark.parametrize("severity", ["business_critical", "standard"])
def test_phone_callback_is_5m_target(
    policy: Policy, role: SubmitterRole, severity: Severity
) -> None:
    d = deadlines(policy, "phone", role, severity, "callback_request")
    assert d is not None
    assert (d.rule, d.guaranteed, d.due_at) == ("phone-callback", False, START + 5 * M)
    assert d.warn_at == START + 3 * M


@pytest.mark.parametrize("role", ["super_admin", "user", "unknown"])
def test_chat_is_5m_target(policy: Policy, role: SubmitterRole) -> None:
    d = deadlines(policy, "chat", role, "business_critical")
    assert d is not None
    assert (d.rule, d.guaranteed, d.due_at) == ("chat", False, START + 5 * M)


@pytest.mark.parametrize("role", ["user", "unknown"])
@pytest.mark.parametrize(("channel", "call_kind"), [("email", None), ("phone", "inbound_call")])
def test_not_super_admin_is_one_business_day_target(
    policy: Policy, role: SubmitterRole, channel: Channel, call_kind: CallKind | None
) -> None:
    d = deadlines(policy, channel, role, "business_critical", call_kind)
    assert d is not None
    assert (d.rule, d.guaranteed, d.calendar) == ("not-super-admin", False, "support-hours")
    assert d.due_at == ams(2026, 11, 30, 16, 0)  # Fri 16:00 -> Mon 16:00 local
    assert d.warn_at == ams(2026, 11, 30, 15, 0)


def test_super_admin_inbound_call_is_1h_target(policy: Policy) -> None:
    d = deadlines(policy, "phone", "super_admin", "business_critical", "inbound_call")
    assert d is not None
    assert (d.rule, d.guaranteed, d.due_at) == ("super-admin-other", False, START + 60 * M)


def test_not_premium_has_no_clock(policy: Policy) -> None:
    channels: list[Channel] = ["chat", "email", "phone"]
    roles: list[SubmitterRole] = ["super_admin", "user", "unknown"]
    severities: list[Severity] = ["business_critical", "standard"]
    kinds: list[CallKind | None] = [None, "callback_request", "inbound_call"]
    for ch, role, sev, kind in itertools.product(channels, roles, severities, kinds):
        assert deadlines(policy, ch, role, sev, kind, premium=False) is None
        assert deadlines(policy, ch, role, sev, kind, premium=True) is not None


def test_example_policy_decides_like_the_default(policy: Policy) -> None:
    example = load_policy(ROOT / "examples" / "policy.yaml")
    assert "us-support" in example.calendars
    channels: list[Channel] = ["chat", "email", "phone"]
    roles: list[SubmitterRole] = ["super_admin", "user", "unknown"]
    severities: list[Severity] = ["business_critical", "standard"]
    kinds: list[CallKind | None] = [None, "callback_request", "inbound_call"]
    for facts in itertools.product(channels, roles, severities, kinds, [True, False]):
        assert deadlines(example, *facts) == deadlines(policy, *facts)


# --- rule order, reclassification, warnings ---------------------------------------------

ORDERED = """
version: "t"
calendars:
  always: {always_open: true}
  office:
    timezone: Europe/Amsterdam
    hours: {mon: [{start: "09:00", end: "17:30"}], fri: [{start: "09:00", end: "17:30"}]}
rules:
  - {name: first, match: {channel: email}, budget: 10m, calendar: always, kind: target}
  - {name: second, match: {channel: [email, chat]}, budget: 20m, calendar: always, kind: guaranteed}
"""


def test_first_match_wins() -> None:
    pol = parse_policy(ORDERED)
    d = deadlines(pol, "email", "user")
    assert d is not None and (d.rule, d.due_at) == ("first", START + 10 * M)
    d = deadlines(pol, "chat", "user")
    assert d is not None and (d.rule, d.guaranteed) == ("second", True)
    assert deadlines(pol, "phone", "user") is None  # no matching rule: no clock
    swapped = pol.model_copy(update={"rules": list(reversed(pol.rules))})
    d = deadlines(swapped, "email", "user")
    assert d is not None and d.rule == "second"


def test_call_kind_criterion_never_matches_without_a_call_kind() -> None:
    pol = parse_policy(
        ORDERED.replace("match: {channel: email}", "match: {call_kind: inbound_call}")
    )
    rule = match_rule(
        pol, channel="email", role="user", severity="standard", call_kind=None, premium=True
    )
    assert rule is not None and rule.name == "second"


def test_reclassification_recomputes_from_the_original_start(policy: Policy) -> None:
    created = datetime(2026, 11, 27, 9, 58, 2, tzinfo=UTC)
    critical = deadlines(policy, "email", "super_admin", "business_critical", started_at=created)
    standard = deadlines(policy, "email", "super_admin", "standard", started_at=created)
    assert critical is not None and standard is not None
    assert critical.started_at == standard.started_at == created
    assert (critical.due_at, standard.due_at) == (created + 30 * M, created + 60 * M)

    ticket = Ticket(
        ticket_id="T-email-0123456789abcdef",
        channel="email",
        portal_id=4411,
        premium=True,
        submitter=Submitter(role="super_admin"),
        severity="business_critical",
        submitter_marked_critical=True,
        created_at=created,
    )
    assert deadlines_for_ticket(policy, ticket) == critical
    assert deadlines_for_ticket(policy, ticket, severity="standard") == standard


def _office_policy(warn: str, budget: str = "15m") -> Policy:
    return parse_policy(
        ORDERED.replace(
            "budget: 10m, calendar: always", f"budget: {budget}, calendar: office, warn: {warn}"
        )
    )


def test_warn_before_in_business_time_lands_before_the_weekend() -> None:
    pol = _office_policy("{before: 10m}")
    d = deadlines(pol, "email", "user", started_at=ams(2026, 11, 27, 17, 20))
    assert d is not None
    assert d.due_at == ams(2026, 11, 30, 9, 5)  # Monday
    assert d.warn_at == ams(2026, 11, 27, 17, 25)  # Friday


def test_warn_fraction_in_business_time() -> None:
    pol = _office_policy("{fraction: 0.5}")
    d = deadlines(pol, "email", "user", started_at=ams(2026, 11, 27, 17, 20))
    assert d is not None
    assert d.warn_at == ams(2026, 11, 27, 17, 27, 30)
    pol = _office_policy("{fraction: 0.8}", budget="1 business_day")
    d = deadlines(pol, "email", "user", started_at=ams(2026, 11, 27, 16, 0))
    assert d is not None
    assert d.due_at == ams(2026, 11, 30, 16, 0)
    # 80% of 8h30m = 6h48m: 1h30m on Friday, 5h18m on Monday
    assert d.warn_at == ams(2026, 11, 30, 14, 18)


def test_warning_never_precedes_the_start_of_counting() -> None:
    pol = _office_policy("{before: 10m}")
    d = deadlines(pol, "email", "user", started_at=ams(2026, 11, 28, 11, 0))  # Saturday
    assert d is not None
    assert (d.warn_at, d.due_at) == (ams(2026, 11, 30, 9, 5), ams(2026, 11, 30, 9, 15))


def test_default_one_business_day_warning_before_the_night(policy: Policy) -> None:
    d = deadlines(policy, "email", "user", started_at=ams(2026, 11, 27, 9, 20))
    assert d is not None
    assert d.due_at == ams(2026, 11, 30, 9, 20)
    assert d.warn_at == ams(2026, 11, 27, 16, 50)  # 20m on Monday + 40m on Friday


def test_a_late_ticket_is_computed_already_past_due(policy: Policy) -> None:
    now = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
    created = now - timedelta(minutes=50)
    d = deadlines(policy, "email", "super_admin", "business_critical", started_at=created)
    assert d is not None
    assert d.warn_at is not None and d.warn_at < now and d.due_at < now
    d = deadlines(policy, "email", "super_admin", started_at=created)
    assert d is not None
    assert d.warn_at is not None and d.warn_at < now < d.due_at


def test_deadlines_are_frozen_and_utc(policy: Policy) -> None:
    d = deadlines(policy, "email", "user", started_at=ams(2026, 11, 27, 16, 0))
    assert d is not None
    assert d.started_at.tzinfo == UTC and d.due_at.tzinfo == UTC
    with pytest.raises(dataclasses.FrozenInstanceError):
        d.rule = "x"  # type: ignore[misc]
    with pytest.raises(ValueError, match="timezone-aware"):
        deadlines(policy, "email", "user", started_at=datetime(2026, 11, 27, 16, 0))


# --- loading and errors -----------------------------------------------------------------


def test_load_from_a_file_and_hash(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(ORDERED)
    assert [r.name for r in load_policy(path).rules] == ["first", "second"]
    assert policy_hash(path) == policy_hash(str(path)) != policy_hash(None)
    assert policy_hash(path).startswith("sha256:")


def test_unquoted_times_and_dates_are_read_as_intended() -> None:
    text = ORDERED.replace('"09:00"', "9:00").replace('"17:30"', "17:30")
    text = text.replace('version: "t"', "version: 2026-11-01")
    pol = parse_policy(text)
    assert pol.version == "2026-11-01"
    assert pol.calendars["office"].hours["mon"][0].end == "17:30"


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match=r"nope\.yaml"):
        load_policy(tmp_path / "nope.yaml")


BASE = """\
version: "t"
calendars:
  always: {always_open: true}
  office:
    timezone: Europe/Amsterdam
    hours:
      mon: [{start: "09:00", end: "17:30"}]
rules:
  - name: a
    match: {channel: email}
    budget: 30m
    calendar: always
    kind: guaranteed
    warn: {before: 10m}
"""


@pytest.mark.parametrize(
    ("old", "new", "line", "problem"),
    [
        ("match: {channel: email}", "match: {channel: email", 11, "YAML error"),
        (
            "    kind: guaranteed\n",
            "    kind: guaranteed\n    colour: red\n",
            14,
            "unknown key 'colour'",
        ),
        ("budget: 30m", "budget: 3x", 11, "bad duration '3x'"),
        ("budget: 30m", "budget: 1d", 11, "business_day"),
        ("calendar: always", "calendar: allways", 12, "unknown calendar 'allways'"),
        ("      mon:", "      monday:", 7, "rules|monday"),
        ('end: "17:30"', 'end: "25:00"', 7, "HH:MM"),
        ("kind: guaranteed", "kind: promised", 13, "guaranteed"),
        ("match: {channel: email}", "match: {channel: fax}", 10, "fax"),
        ("    warn: {before: 10m}\n", "    warn: {before: 30m}\n", 14, "shorter than the budget"),
        ("    warn: {before: 10m}\n", "    warn: {fraction: 1.5}\n", 14, "less than 1"),
        ("    budget: 30m\n", "", 9, "missing key 'budget'"),
        ("timezone: Europe/Amsterdam", "timezone: Europe/Amsterdamm", 5, "time zone"),
        (
            "  always: {always_open: true}\n",
            "  always: {always_open: true}\n  always: {}\n",
            4,
            "duplicate",
        ),
        (
            '      mon: [{start: "09:00", end: "17:30"}]\n',
            '      mon: [{start: "09:00", end: "17:30"}, {start: "12:00", end: "13:00"}]\n',
            7,
            "overlaps",
        ),
    ],
)
def test_malformed_policy_names_file_and_line(
    tmp_path: Path, old: str, new: str, line: int, problem: str
) -> None:
    assert old in BASE
    path = tmp_path / "bad-policy.yaml"
    path.write_text(BASE.replace(old, new, 1))
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    message = str(info.value)
    assert str(path) in message
    assert f"line {line}:" in message
    assert info.value.line == line
    assert re.search(problem, message), message


def test_bad_weekday_message_points_at_the_key(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(BASE.replace("      mon:", "      monday:"))
    with pytest.raises(PolicyError, match=r"line 7: calendars\.office\.hours\.monday: .*'mon'"):
        load_policy(path)


def test_clock_false_takes_no_budget() -> None:
    text = BASE.replace("    kind: guaranteed\n", "    kind: guaranteed\n    clock: false\n")
    with pytest.raises(PolicyError, match=r"line 11: rules\[0\]\.budget: a rule with clock: false"):
        parse_policy(text, "x.yaml")


def test_not_a_mapping_and_empty() -> None:
    with pytest.raises(PolicyError, match="line 1"):
        parse_policy("- a\n- b\n", "x.yaml")
    with pytest.raises(PolicyError, match=r"x\.yaml"):
        parse_policy("", "x.yaml")
