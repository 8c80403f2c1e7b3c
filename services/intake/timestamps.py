"""Timestamps at the edge: what intake does with the times upstream systems send.

- Plausible years only. Every inbound timestamp (a create time: chat `started_at`, email
  `received_at` or a raw email's `Date` header, phone `requested_at`; a chat message's
  `at`; a helpdesk update's `at`) must lie in a year from 2000 to 2100, read as
  written in its own offset. Anything else is a `PermanentError(reason=
  "invalid_timestamp")`: the message is dead-lettered with that reason. For JSON
  payloads the check is part of the models (`schemas.inbound.Timestamp`), so it also
  catches values pydantic cannot parse at all (year 10000); `require_plausible` is the
  same check for times intake reads itself (the MIME `Date` header).
- No clocks from the future. A time later than intake's own clock (`now`, the moment
  it handles the message) plus `MAX_CLOCK_SKEW_S` (default 300 s) is not believed: it
  is replaced by `now`, and the replacement is recorded. A ticket keeps the source's
  time in `reported_created_at` and the reason in `timestamp_note`
  (`future_beyond_skew`); its SLA clock starts at `now`. Within the skew the source's
  time is kept as it is: clocks of different machines disagree by seconds.
- Event ids never depend on `now`: they are derived from what the source sent, so a
  redelivered message still yields the same ids whatever the clock says then.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from schemas.inbound import INVALID_TIMESTAMP, timestamp_problem
from schemas.ticket import TimestampNote
from services.runtime.errors import PermanentError

DEFAULT_MAX_SKEW = timedelta(minutes=5)
FUTURE_BEYOND_SKEW: TimestampNote = "future_beyond_skew"

log = structlog.get_logger("intake")


def require_plausible(value: datetime, what: str) -> datetime:
    """`value`, or PermanentError(reason="invalid_timestamp") naming `what`."""
    problem = timestamp_problem(value)
    if problem is not None:
        raise PermanentError(f"{what} {value.isoformat()}: {problem}", reason=INVALID_TIMESTAMP)
    return value


def bound_future(
    reported: datetime, now: datetime, max_skew: timedelta
) -> tuple[datetime, TimestampNote | None]:
    """(the time to use, why it is not `reported`, or None when it is `reported`)."""
    if reported > now + max_skew:
        return now, FUTURE_BEYOND_SKEW
    return reported, None


def warn_clamped(
    what: str, ticket_id: str, reported: datetime, now: datetime, max_skew: timedelta
) -> None:
    log.warning(
        "intake.future_timestamp_clamped",
        what=what,
        ticket_id=ticket_id,
        reported=reported.isoformat(),
        used=now.isoformat(),
        ahead_s=round((reported - now).total_seconds(), 3),
        max_clock_skew_s=max_skew.total_seconds(),
        reason=FUTURE_BEYOND_SKEW,
    )
