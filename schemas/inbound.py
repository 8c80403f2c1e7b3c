"""Inbound payloads (DESIGN.md section 4): what upstream systems publish to support.inbound.

Unknown extra fields are allowed and kept (intake copies them into the ticket's
`source` block); a missing or mistyped known field is a schema violation.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

TICKET_ID_PATTERN = r"^T-(chat|email|phone)-[0-9a-f]{16}$"

SourceId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=998)]
TicketId = Annotated[str, StringConstraints(pattern=TICKET_ID_PATTERN)]
Severity = Literal["business_critical", "standard"]


class _Inbound(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ChatVisitor(_Inbound):
    user_id: str | None = None
    email: str | None = None
    name: str | None = None


class ChatMessage(_Inbound):
    from_: Literal["visitor", "agent", "bot", "system"] = Field(alias="from")
    at: AwareDatetime
    text: str = Field(max_length=100_000)


class ChatRequest(_Inbound):
    """`inbound.chat`: a chat conversation as the chat widget reports it."""

    conversation_id: SourceId
    portal_id: int
    started_at: AwareDatetime
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
    received_at: AwareDatetime
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
    requested_at: AwareDatetime
    ivr: PhoneIvr | None = None
    transcript: str | None = None


class _Update(_Inbound):
    ticket_id: TicketId
    at: AwareDatetime


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


HelpdeskUpdate = Annotated[
    FirstResponse | Reclassified | Exempted | Resolved | Acknowledged,
    Field(discriminator="type"),
]
