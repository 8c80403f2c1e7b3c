"""The canonical ticket: one model for chat, email and phone requests."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from schemas.inbound import Severity, TicketId

Channel = Literal["chat", "email", "phone"]
SubmitterRole = Literal["super_admin", "user", "unknown"]
CallKind = Literal["callback_request", "inbound_call"]
TimestampNote = Literal["future_beyond_skew"]


class _Canonical(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Submitter(_Canonical):
    role: SubmitterRole
    user_id: str | None = None
    email: str | None = Field(default=None, description="Lower-cased address")
    phone: str | None = Field(default=None, description="E.164")
    name: str | None = None


class TriageHint(_Canonical):
    """A signal found in the text. Hints inform the agent; they never change severity."""

    signal: str = Field(description="e.g. login_outage, system_outage, data_loss")
    points_to: Severity
    phrases: list[str] = Field(description="The phrases in the request that matched")


class Attachment(_Canonical):
    filename: str | None
    content_type: str
    size: int = Field(ge=0, description="Decoded size in bytes; the content is not kept")


class Ticket(_Canonical):
    ticket_id: TicketId
    channel: Channel
    portal_id: int | None
    account_name: str | None = None
    premium: bool = Field(description="The account bought Premium Support")
    timezone: str | None = Field(default=None, description="The account's IANA time zone")
    submitter: Submitter
    severity: Severity
    submitter_marked_critical: bool
    call_kind: CallKind | None = None
    subject: str = ""
    text: str = ""
    language: str | None = None
    created_at: AwareDatetime = Field(description="When the customer submitted it: the SLA start")
    # NOTE: the two fields below are left out of the JSON while unset, so a ticket whose
    # create time was taken as sent serializes as it did before they existed.
    reported_created_at: AwareDatetime | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description="The create time the source sent, kept when created_at is not it",
    )
    timestamp_note: TimestampNote | None = Field(
        default=None,
        exclude_if=lambda value: value is None,
        description=(
            "Why created_at is not the source's create time: future_beyond_skew (it lay "
            "beyond intake's clock plus MAX_CLOCK_SKEW_S, so the clock starts when intake "
            "received the request)"
        ),
    )
    triage_hints: list[TriageHint] = Field(default_factory=list)
    attachments: list[Attachment] = Field(default_factory=list)
    source: dict[str, Any] = Field(
        default_factory=dict, description="Channel ids and unknown upstream fields, kept as sent"
    )
