"""The on-call file: loading, errors naming the line, hand-offs, overrides, DST, coverage gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from services.notifier.oncall import (
    OnCall,
    OnCallError,
    coverage_gaps,
    load_oncall,
    parse_oncall,
    scheduled_person,
    who_is_on_call,
)

ROOT = Path(__file__).resolve().parents[2]
AMS = ZoneInfo("Europe/Amsterdam")
NYC = ZoneInfo("America/New_York")
S = timedelta(seconds=1)

# Rotations that start just before the DST changes, so the expected shifts are easy to
# count by hand: Amsterdam week 0 = kim (from Mon 12 Oct 09:00), week 1 = lars, week 2 = kim.
BASE = """\
people:
  - {id: kim, name: Kim, email: kim@support.example, timezone: Europe/Amsterdam,
     paging_webhook: {url: "https://pager.example/v2/enqueue", routing_key: RK-KIM}}
  - {id: lars, name: Lars, email: lars@support.example, timezone: Europe/Amsterdam}
  - {id: mira, name: Mira, email: mira@support.example, timezone: America/New_York}
schedules:
  primary:
    timezone: Europe/Amsterdam
    rotation: [kim, lars]
    handoff: {weekday: mon, hour: 9}
    start: 2026-10-12
  secondary:
    timezone: Europe/Amsterdam
    rotation: [lars, kim]
    handoff: {weekday: mon, hour: 9}
    start: 2026-10-12
  sunday-night:
    timezone: Europe/Amsterdam
    rotation: [kim, lars]
    handoff: {weekday: sun, hour: 2}
    start: 2026-03-22
  us:
    timezone: America/New_York
    rotation: [mira, lars]
    handoff: {weekday: mon, hour: 9}
    start: 2026-10-26
  us-early:
    timezone: America/New_York
    rotation: [mira, kim]
    handoff: {weekday: sun, hour: 1}
    start: 2026-10-25
escalation:
  - level: 1
    schedules: [primary]
  - level: 2
    schedules: [secondary]
    people: [mira]
team_channel: {chat_webhook: "https://chat.example/hooks/team"}
"""


@pytest.fixture(scope="module")
def oncall() -> OnCall:
    return parse_oncall(BASE, "base.yaml")


def utc(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> datetime:
    return datetime(y, mo, d, h, mi, tzinfo=UTC)


def on(oncall: OnCall, schedule: str, at: datetime) -> str | None:
    return scheduled_person(oncall.schedules[schedule], at)


def ids(oncall: OnCall, level: int, at: datetime) -> list[str]:
    return [p.id for p in who_is_on_call(oncall, level, at)]


# --- loading -------------------------------------------------------------------------


def test_example_file_loads() -> None:
    oc = load_oncall(ROOT / "examples" / "oncall.yaml")
    assert [p.id for p in oc.people] == ["oncall-kim", "oncall-lars", "oncall-mira"]
    assert set(oc.schedules) == {"primary", "secondary"}
    assert oc.level(2).people == ["oncall-mira"]
    assert oc.digest_interval == timedelta(minutes=5)
    assert oc.team_channel is not None
    # The Christmas override: the manager is primary from Thursday 18:00 local.
    at = datetime(2026, 12, 24, 18, 0, tzinfo=AMS)
    assert ids(oc, 1, at - S) != ["oncall-mira"]
    assert ids(oc, 1, at) == ["oncall-mira"]
    assert ids(oc, 2, at)[-1] == "oncall-mira"  # once, though also on level 1 and 2


def test_defaults(oncall: OnCall) -> None:
    assert oncall.notify.breached_business_critical.levels == [1, 2]
    assert oncall.notify.missed_target.levels == []
    assert oncall.notify.missed_target.team
    assert oncall.channels.page[0] == "paging_webhook"
    assert oncall.link_template is None


# --- hand-offs and DST -----------------------------------------------------------------


def test_handoff_boundary_is_half_open(oncall: OnCall) -> None:
    handoff = datetime(2026, 10, 19, 9, 0, tzinfo=AMS)  # CEST: 07:00 UTC
    assert handoff == utc(2026, 10, 19, 7)
    assert on(oncall, "primary", handoff - S) == "kim"
    assert on(oncall, "primary", handoff) == "lars"
    assert on(oncall, "secondary", handoff - S) == "lars"
    assert on(oncall, "secondary", handoff) == "kim"


def test_before_start_nobody_and_rotation_wraps(oncall: OnCall) -> None:
    start = datetime(2026, 10, 12, 9, 0, tzinfo=AMS)
    assert on(oncall, "primary", start - S) is None
    assert on(oncall, "primary", start) == "kim"
    assert on(oncall, "primary", start + timedelta(weeks=2, hours=1)) == "kim"
    assert on(oncall, "primary", start + timedelta(weeks=53, hours=1)) == "lars"


def test_amsterdam_handoff_after_dst_end_stays_at_nine_local(oncall: OnCall) -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET. The next hand-off, Mon 26 Oct 09:00 CET, is
    # 08:00 UTC (the week before it was 07:00 UTC): lars's shift is 7 days and 1 hour.
    assert on(oncall, "primary", utc(2026, 10, 26, 7, 30)) == "lars"  # 08:30 local
    assert on(oncall, "primary", utc(2026, 10, 26, 8) - S) == "lars"
    assert on(oncall, "primary", utc(2026, 10, 26, 8)) == "kim"


def test_handoff_hour_in_the_fall_back_hour_is_its_first_occurrence(oncall: OnCall) -> None:
    # Sunday 02:00 on 25 Oct 2026 happens twice in Amsterdam; the first (CEST) is 00:00 UTC.
    assert on(oncall, "sunday-night", utc(2026, 10, 25, 0) - S) != on(
        oncall, "sunday-night", utc(2026, 10, 25, 0)
    )
    assert on(oncall, "sunday-night", utc(2026, 10, 25, 0)) == on(
        oncall, "sunday-night", utc(2026, 10, 25, 1, 30)
    )


def test_handoff_hour_in_the_spring_gap_moves_forward(oncall: OnCall) -> None:
    # Sunday 29 Mar 2026 02:00 does not exist in Amsterdam (02:00 CET -> 03:00 CEST):
    # the hand-off happens at 03:00 CEST = 01:00 UTC. Rotation started 22 Mar (week 0 kim).
    assert on(oncall, "sunday-night", utc(2026, 3, 29, 1) - S) == "kim"
    assert on(oncall, "sunday-night", utc(2026, 3, 29, 1)) == "lars"


def test_new_york_handoff_after_dst_end_2026_11_01(oncall: OnCall) -> None:
    # Week 0 mira from Mon 26 Oct 09:00 EDT (13:00 UTC); 1 Nov 02:00 EDT -> 01:00 EST;
    # lars from Mon 2 Nov 09:00 EST = 14:00 UTC, not 13:00.
    assert on(oncall, "us", utc(2026, 10, 26, 13) - S) is None
    assert on(oncall, "us", utc(2026, 10, 26, 13)) == "mira"
    assert on(oncall, "us", utc(2026, 11, 2, 13, 30)) == "mira"
    assert on(oncall, "us", utc(2026, 11, 2, 14) - S) == "mira"
    assert on(oncall, "us", utc(2026, 11, 2, 14)) == "lars"
    # Sunday 01:00 on 1 Nov happens twice in New York: the first, 05:00 UTC, is the hand-off.
    assert on(oncall, "us-early", utc(2026, 11, 1, 5) - S) == "mira"
    assert on(oncall, "us-early", utc(2026, 11, 1, 5)) == "kim"
    assert on(oncall, "us-early", utc(2026, 11, 1, 6)) == "kim"


def test_shift_weeks_and_end() -> None:
    text = BASE.replace(
        "    start: 2026-10-12\n  secondary:",
        "    start: 2026-10-12\n    shift_weeks: 2\n    end: 2026-11-23\n  secondary:",
    )
    oc = parse_oncall(text)
    monday = datetime(2026, 10, 12, 9, tzinfo=AMS)
    assert [on(oc, "primary", monday + timedelta(weeks=w, hours=1)) for w in range(6)] == [
        "kim",
        "kim",
        "lars",
        "lars",
        "kim",
        "kim",
    ]
    end = datetime(2026, 11, 23, 9, tzinfo=AMS)
    assert on(oc, "primary", end - S) == "kim"
    assert on(oc, "primary", end) is None


# --- overrides and levels --------------------------------------------------------------

OVERRIDES = """\
    start: 2026-10-12
    overrides:
      - {start: "2026-10-24 18:00", end: "2026-10-26 09:00", person: mira, note: weekend swap}
      - {start: 2026-10-05T09:00:00+02:00, end: 2026-10-12T09:00:00+02:00, person: lars}
  secondary:"""


@pytest.fixture(scope="module")
def with_overrides() -> OnCall:
    return parse_oncall(BASE.replace("    start: 2026-10-12\n  secondary:", OVERRIDES, 1))


def test_override_replaces_whoever_is_on(with_overrides: OnCall) -> None:
    oc = with_overrides
    begin = datetime(2026, 10, 24, 18, 0, tzinfo=AMS)  # naive in the file: local CEST
    end = datetime(2026, 10, 26, 9, 0, tzinfo=AMS)  # ... and CET, after the DST change
    assert ids(oc, 1, begin - S) == ["lars"]
    assert ids(oc, 1, begin) == ["mira"]
    assert ids(oc, 1, end - S) == ["mira"]
    assert ids(oc, 1, end) == ["kim"]  # back to the rotation at the override's end


def test_override_covers_time_before_the_rotation_starts(with_overrides: OnCall) -> None:
    assert ids(with_overrides, 1, utc(2026, 10, 5, 7)) == ["lars"]
    assert ids(with_overrides, 1, utc(2026, 10, 5, 7) - S) == []


def test_level_two_is_secondary_then_manager_each_once(oncall: OnCall) -> None:
    at = utc(2026, 10, 20, 12)
    assert ids(oncall, 1, at) == ["lars"]
    assert ids(oncall, 2, at) == ["kim", "mira"]
    text = BASE.replace("people: [mira]", "people: [kim, mira]")
    assert ids(parse_oncall(text), 2, at) == ["kim", "mira"]


def test_bad_questions(oncall: OnCall) -> None:
    with pytest.raises(ValueError, match="no escalation level 3"):
        who_is_on_call(oncall, 3, utc(2026, 10, 20))
    with pytest.raises(ValueError, match="timezone-aware"):
        who_is_on_call(oncall, 1, datetime(2026, 10, 20))


# --- coverage gaps ---------------------------------------------------------------------


def test_coverage_gap_before_the_rotation_starts(oncall: OnCall) -> None:
    begin = utc(2026, 10, 9)
    assert coverage_gaps(oncall, begin) == [(begin, datetime(2026, 10, 12, 9, tzinfo=AMS))]
    assert coverage_gaps(oncall, utc(2026, 10, 20)) == []


def test_coverage_gap_split_by_an_override_and_after_the_end(with_overrides: OnCall) -> None:
    text = BASE.replace("    start: 2026-10-12\n  secondary:", OVERRIDES, 1).replace(
        "    start: 2026-10-12\n    overrides:",
        "    start: 2026-10-12\n    end: 2026-10-19\n    overrides:",
    )
    oc = parse_oncall(text)
    gaps = coverage_gaps(oc, utc(2026, 10, 1), days=30)
    assert gaps == [
        (utc(2026, 10, 1), utc(2026, 10, 5, 7)),
        (datetime(2026, 10, 19, 9, tzinfo=AMS), datetime(2026, 10, 24, 18, tzinfo=AMS)),
        (datetime(2026, 10, 26, 9, tzinfo=AMS), utc(2026, 10, 31)),
    ]


def test_no_gaps_when_level_one_has_a_fixed_person(oncall: OnCall) -> None:
    text = BASE.replace(
        "    schedules: [primary]\n", "    schedules: [primary]\n    people: [mira]\n"
    )
    assert coverage_gaps(parse_oncall(text), utc(2026, 1, 1)) == []


# --- malformed files -------------------------------------------------------------------


def line_of(text: str, needle: str, nth: int = 1) -> int:
    seen = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            seen += 1
            if seen == nth:
                return number
    raise AssertionError(f"{needle!r} not in text")


BROKEN = [
    # (replace this, with this, the line to blame (a marker in the result), message part)
    (
        "rotation: [kim, lars]",
        "rotation:\n      - kim\n      - lara",
        "- lara",
        "unknown person 'lara'",
    ),
    (
        "start: 2026-10-12\n  secondary",
        "start: 2026-10-13\n  secondary",
        "2026-10-13",
        "must be the hand-off weekday",
    ),
    (
        "timezone: America/New_York\n    rotation: [mira, lars]",
        "timezone: Mars/Olympus\n    rotation: [mira, lars]",
        "Mars/Olympus",
        "unknown IANA time zone",
    ),
    (
        "email: lars@support.example",
        "email: lars at support",
        "lars at support",
        "expected an email address",
    ),
    ("id: lars,", "id: kim,", "id: kim, name: Lars", "duplicate person id 'kim'"),
    ("  - level: 2\n", "  - level: 3\n", "level: 3", "levels must be 1, 2, ... in order"),
    (
        "schedules: [secondary]",
        "schedules: [tertiary]",
        "schedules: [tertiary]",
        "unknown schedule 'tertiary'",
    ),
    (
        "hour: 9}\n    start: 2026-10-26",
        "hour: 25}\n    start: 2026-10-26",
        "hour: 25",
        "less than or equal to 23",
    ),
    ("team_channel:", "bogus: 1\nteam_channel:", "bogus: 1", "unknown key 'bogus'"),
    ("team_channel:", "digest_interval: 1d\nteam_channel:", "digest_interval", "bad duration"),
    (
        "team_channel:",
        'link_template: "https://h.example/{ticket}"\nteam_channel:',
        "link_template",
        "bad link template",
    ),
    (
        "team_channel:",
        "notify:\n  missed_target: {levels: [1], kind: page}\nteam_channel:",
        "missed_target",
        "a missed target never pages",
    ),
    (
        "team_channel:",
        "channels:\n  remind: [paging_webhook]\nteam_channel:",
        "remind:",
        "paging_webhook is for pages only",
    ),
    (
        "team_channel:",
        "notify:\n  opened_standard: {levels: [4]}\nteam_channel:",
        "opened_standard",
        "no escalation level 4",
    ),
    (
        'team_channel: {chat_webhook: "https://chat.example/hooks/team"}',
        "notify: {}",
        "notify: {}",
        "needs a team_channel",
    ),
    (
        "routing_key: RK-KIM",
        "routing_key: RK-KIM, routing_key: x",
        "routing_key: x",
        "duplicate key 'routing_key'",
    ),
    (
        "    rotation: [kim, lars]\n    handoff: {weekday: mon",
        "    rotation: [kim, lars\n    handoff: {weekday: mon",
        "handoff: {weekday: mon",
        "YAML error",
    ),
    (
        'url: "https://pager.example/v2/enqueue"',
        "url: ftp://pager.example",
        "ftp://",
        "expected an http(s) URL",
    ),
]


@pytest.mark.parametrize(("old", "new", "marker", "message"), BROKEN)
def test_malformed_file_names_file_line_and_problem(
    tmp_path: Path, old: str, new: str, marker: str, message: str
) -> None:
    assert old in BASE
    text = BASE.replace(old, new, 1)
    path = tmp_path / "oncall.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(OnCallError) as info:
        load_oncall(path)
    err = info.value
    assert message in str(err)
    expected = line_of(text, marker)
    assert f"{path}, line " in str(err)
    assert any(line == expected for line, _ in err.problems), (str(err), expected)


def test_overlapping_overrides_name_the_later_one() -> None:
    text = BASE.replace(
        "    start: 2026-10-12\n  secondary:",
        OVERRIDES.replace(
            "2026-10-05T09:00:00+02:00, end: 2026-10-12",
            "2026-10-25T09:00:00+01:00, end: 2026-10-27",
        ),
        1,
    )
    with pytest.raises(OnCallError, match=r"overlaps override 1 \(mira\)") as info:
        parse_oncall(text, "x.yaml")
    assert info.value.line == line_of(text, "2026-10-25T09")


def test_missing_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(OnCallError, match=r"nope\.yaml: cannot read the on-call file"):
        load_oncall(tmp_path / "nope.yaml")
    with pytest.raises(OnCallError, match="line 1: expected a mapping"):
        parse_oncall("- a\n- b\n")
    with pytest.raises(OnCallError, match="missing key 'people'"):
        parse_oncall("escalation: []\n")
