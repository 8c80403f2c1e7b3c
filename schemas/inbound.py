"""Inbound payloads (DESIGN.md section 4): what upstream systems publish to support.inbound.

Unknown extra fields are allowed and kept (intake copies them into the ticket's
`source` block); a missing or mistyped known field is a schema violation.

Every timestamp is a `Timestamp`: RFC 3339 with an offset, and a year (as written, in
its own offset) from 2000 to 2100. A value outside that range, including one no
datetime can hold (year 10000, a unix time past 9999), fails with the error type
`invalid_timestamp`, which intake dead-letters under that reason; an unreadable or
zone-less value is an ordinary schema violation.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

TICKET_ID_PATTERN = r"^T-(chat|email|phone)-[0-9a-f]{16}$"

SourceId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=998)]
TicketId = Annotated[str, StringConstraints(pattern=TICKET_ID_PATTERN)]
Severity = Literal["business_critical", "standard"]

MIN_YEAR = 2000
MAX_YEAR = 2100
INVALID_TIMESTAMP = "invalid_timestamp"
_LEADING_YEAR = re.compile(r"([+-]?[0-9]{4,})-")
MIN_YEAR_TEXT, MAX_YEAR_TEXT = f"{MIN_YEAR}-", f"{MAX_YEAR}-"  # "2000-" <= "2026-" <= "2100-"


def timestamp_problem(value: datetime) -> str | None:
    """Why `value` is no plausible timestamp, or None when its year is in range."""
    if MIN_YEAR <= value.year <= MAX_YEAR:
        return None
    return f"year {value.year} is outside {MIN_YEAR}-{MAX_YEAR}"


def _invalid(problem: str) -> PydanticCustomError:
    return PydanticCustomError(
        INVALID_TIMESTAMP, "implausible timestamp: {problem}", {"problem": problem}
    )


def _bounded(value: Any, handler: ValidatorFunctionWrapHandler) -> datetime:
    # Nearly every value: a year in range as written, which is the parsed value's year
    # too (it keeps its own offset), so nothing is left to check after the parse.
    if type(value) is str and MIN_YEAR_TEXT <= value[:5] <= MAX_YEAR_TEXT and value[4:5] == "-":
        parsed: datetime = handler(value)
        return parsed
    # The year is read off the text first: pydantic cannot parse year 10000 at all.
    if isinstance(value, str) and (match := _LEADING_YEAR.match(value)):
        year = int(match.group(1))
        if not MIN_YEAR <= year <= MAX_YEAR:
            raise _invalid(f"year {year} is outside {MIN_YEAR}-{MAX_YEAR}")
    try:
        parsed = handler(value)
    except ValidationError as exc:
        # A number pydantic cannot turn into an instant (past 9999, NaN, inf) is absurd,
        # not malformed: JSON has no other way to be wrong about it.
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if numeric and all(err["type"] == "datetime_parsing" for err in exc.errors()):
            raise _invalid(f"{value!r} is no instant between {MIN_YEAR} and {MAX_YEAR}") from None
        raise
    if (problem := timestamp_problem(parsed)) is not None:
        raise _invalid(problem)
    return parsed


Timestamp = Annotated[
    AwareDatetime,
    WrapValidator(_bounded),
    Field(description=f"RFC 3339 with offset; the year must be {MIN_YEAR}-{MAX_YEAR}"),
]


class _Inbound(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ChatVisitor(_Inbound):
    user_id: str | None = None
    email: str | None = None
    name: str | None = None


class ChatMessage(_Inbound):
    from_: Literal["visitor", "agent", "bot", "system"] = Field(alias="from")
    at: Timestamp
    text: str = Field(max_length=100_000)


class ChatRequest(_Inbound):
    """`inbound.chat`: a chat conversation as the chat widget reports it."""

    conversation_id: SourceId
    portal_id: int
    started_at: Timestamp
    visitor: ChatVisitor
    messages: list[ChatMessage] = Field(min_length=1)
    language: str | None = None
    business_critical: bool = False


class EmailFormFlags(_Inbound):
    business_critical: bool = False
    user_id: str | None = None


class EmailForm(_Inbound):
    """`inbound.email` as `application/json`, from the in-app support form."""

    message_id: SourceId
    portal_id: int | None = None
    from_: str = Field(alias="from", min_length=3)
    subject: str = ""
    text: str | None = None
    html: str | None = None
    received_at: Timestamp
    in_reply_to: str | None = None
    references: list[str] = Field(default_factory=list)
    form: EmailFormFlags | None = None


class PhoneIvr(_Inbound):
    business_critical: bool = False
    language: str | None = None


class PhoneRequest(_Inbound):
    """`inbound.phone`: a callback request or an inbound call from the telephony system."""

    call_id: SourceId
    portal_id: int
    kind: Literal["callback_request", "inbound_call"]
    caller_number: str | None = None
    caller_user_id: str | None = None
    requested_at: Timestamp
    ivr: PhoneIvr | None = None
    transcript: str | None = None


class _Update(_Inbound):
    ticket_id: TicketId
    at: Timestamp


class FirstResponse(_Update):
    type: Literal["first_response"]
    agent: str


class Reclassified(_Update):
    type: Literal["reclassified"]
    severity: Severity
    reason: str | None = None


class Exempted(_Update):
    type: Literal["exempted"]
    reason: str


class Resolved(_Update):
    type: Literal["resolved"]


class Acknowledged(_Update):
    type: Literal["acknowledged"]
    by: str


class AgentReply(_Update):
    """A later agent reply or public update (the first is `first_response`)."""

    type: Literal["agent_reply"]
    agent: str


class WaitingOnCustomer(_Update):
    """The helpdesk waits on the customer: the clocks whose rule says so pause."""

    type: Literal["waiting_on_customer"]
    reason: str | None = None


class Resumed(_Update):
    """The wait on the customer is over (a customer reply also resumes, where configured)."""

    type: Literal["resumed"]


AnyHelpdeskUpdate = (
    FirstResponse
    | AgentReply
    | Reclassified
    | Exempted
    | Resolved
    | Acknowledged
    | WaitingOnCustomer
    | Resumed
)
HelpdeskUpdate = Annotated[AnyHelpdeskUpdate, Field(discriminator="type")]
