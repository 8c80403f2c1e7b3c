"""Pure normalization: one inbound payload -> canonical events. No broker, no clock.

`now` is the event time and intake's clock for bounding the customer's create time (a
create time beyond `now + max_skew` starts the SLA clock at `now`, see
services/intake/timestamps.py); ids are derived from what the customer sent, so the
same input always yields the same ticket id and the same event ids.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

from pydantic import BaseModel

from schemas.events import CloudEvent, EventData, TicketOpened, TicketUpdated, make_event
from schemas.inbound import ChatRequest, EmailForm, PhoneRequest
from schemas.ticket import Attachment, CallKind, Channel, TimestampNote
from services.common.text import clean_optional, clean_text
from services.intake.accounts import AccountsDirectory, Identity
from services.intake.contacts import normalize_email_address, normalize_phone_number
from services.intake.html_text import html_to_text
from services.intake.ids import thread_root, ticket_id
from services.intake.mime import ParsedEmail
from services.intake.timestamps import (
    DEFAULT_MAX_SKEW,
    bound_future,
    require_plausible,
    warn_clamped,
)
from services.intake.triage import triage_hints
from services.runtime.messages import Outgoing

SERVICE = "intake"
MAX_TEXT = 64 * 1024


# NOTE: slots, not frozen: a frozen dataclass sets each field through object.__setattr__,
# ~3x the cost of building one, for three of them per message. Nothing mutates them.
@dataclass(slots=True)
class Request:
    """A channel-independent view of a customer's request or follow-up."""

    channel: Channel
    source_id: str
    thread_id: str
    portal_id: int | None
    who: Identity
    name: str | None
    marked_critical: bool
    subject: str
    text: str
    created_at: datetime
    language: str | None = None
    call_kind: CallKind | None = None
    attachments: list[Attachment] = field(default_factory=list)
    source: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Context:
    directory: AccountsDirectory
    correlation_id: str
    now: datetime
    max_skew: timedelta = DEFAULT_MAX_SKEW

    def bounded(
        self, reported: datetime, what: str, tid: str
    ) -> tuple[datetime, TimestampNote | None]:
        """(the time to use for `reported`, why it is not `reported` or None)."""
        used, note = bound_future(reported, self.now, self.max_skew)
        if note is not None:
            warn_clamped(what, tid, reported, self.now, self.max_skew)
        return used, note


def ticket_fields(req: Request, ctx: Context) -> dict[str, Any]:
    """A ticket as the fields its model validates (the submitter a dict too): one
    validation of the whole event in `opened` costs half of building each model."""
    directory = ctx.directory
    account = directory.account(req.portal_id)
    role = directory.role(account, req.who)
    tid = ticket_id(req.channel, req.thread_id)
    created_at, note = ctx.bounded(req.created_at, "created_at", tid)
    # What people read (and triage scans) leaves without bidi or zero-width characters.
    subject, text = clean_text(req.subject), clean_text(req.text)
    return dict(
        ticket_id=tid,
        channel=req.channel,
        portal_id=req.portal_id,
        account_name=account.name if account else None,
        premium=bool(account and account.premium_support),
        timezone=account.timezone if account else None,
        submitter=dict(
            role=role,
            user_id=req.who.user_id,
            email=req.who.email,
            phone=req.who.phone,
            name=clean_optional(req.name),
        ),
        severity="business_critical" if req.marked_critical else "standard",
        submitter_marked_critical=req.marked_critical,
        call_kind=req.call_kind,
        subject=subject,
        text=text[:MAX_TEXT],
        language=req.language,
        created_at=created_at,
        reported_created_at=req.created_at if note else None,
        timestamp_note=note,
        triage_hints=triage_hints(subject, text),
        attachments=req.attachments,
        source=req.source,
    )


@dataclass(slots=True)
class Draft:
    """An event before its envelope. The consume loop gets it as a message serialized
    once (`outgoing`); whoever wants the CloudEvent (tests, previews) gets `event`, and
    the two are the same bytes (tests/unit/test_runtime_messages.py)."""

    data: EventData
    subject: str
    cause: str
    correlation_id: str
    now: datetime

    def _envelope(self) -> dict[str, Any]:
        return {
            "service": SERVICE,
            "subject": self.subject,
            "cause": self.cause,
            "correlation_id": self.correlation_id,
            "now": self.now,
        }

    def event(self) -> CloudEvent:
        return make_event(self.data, **self._envelope())

    def outgoing(self) -> Outgoing:
        return Outgoing.from_data(self.data, **self._envelope())


def events(drafts: list[Draft]) -> list[CloudEvent]:
    return [d.event() for d in drafts]


def _event(data: EventData, subject: str, cause: str, ctx: Context) -> Draft:
    return Draft(data, subject, cause, ctx.correlation_id, ctx.now)


def opened(req: Request, ctx: Context) -> Draft:
    data = TicketOpened.model_validate({"ticket": ticket_fields(req, ctx)})
    return _event(data, data.ticket.ticket_id, "opened", ctx)


def updated(req: Request, ctx: Context, cause: str) -> Draft:
    tid = ticket_id(req.channel, req.thread_id)
    at, _ = ctx.bounded(req.created_at, "at", tid)  # `cause` keeps the reported time
    data = TicketUpdated(
        ticket_id=tid,
        channel=req.channel,
        at=at,
        author=req.who.email or req.who.phone or req.who.user_id,
        text=clean_text(req.text)[:MAX_TEXT],
        attachments=req.attachments,
        source=req.source,
    )
    return _event(data, tid, cause, ctx)


def normalize_chat(p: ChatRequest, ctx: Context) -> list[CloudEvent]:
    return events(chat_drafts(p, ctx))


def chat_drafts(p: ChatRequest, ctx: Context) -> list[Draft]:
    """A conversation snapshot: opened (once per conversation, by id); each later
    snapshot with more visitor messages also yields an update for the newest one."""
    visitor = [m for m in p.messages if m.from_ == "visitor"]
    email = p.visitor.email.strip().lower() if p.visitor.email else None
    req = Request(
        channel="chat",
        source_id=p.conversation_id,
        thread_id=p.conversation_id,
        portal_id=p.portal_id,
        who=Identity(user_id=p.visitor.user_id, email=email),
        name=p.visitor.name,
        marked_critical=p.business_critical,
        subject=(visitor[0].text if visitor else p.messages[0].text)[:120],
        text="\n".join(m.text for m in visitor),
        created_at=p.started_at,
        language=p.language,
        source={"conversation_id": p.conversation_id, "extra": unknown_fields(p)},
    )
    drafts = [opened(req, ctx)]
    if len(visitor) > 1:
        last = visitor[-1]
        follow = dataclasses.replace(req, text=last.text, created_at=last.at)
        drafts.append(
            updated(follow, ctx, f"chat:{len(visitor)}:{last.at.astimezone(UTC).isoformat()}")
        )
    return drafts


def _email_request(
    *,
    message_id: str,
    in_reply_to: str | None,
    references: list[str],
    portal_id: int | None,
    sender: str,
    name: str | None,
    user_id: str | None,
    marked_critical: bool,
    subject: str,
    text: str,
    created_at: datetime,
    directory: AccountsDirectory,
    **rest: Any,
) -> Request:
    who = Identity(user_id=user_id, email=sender)
    return Request(
        channel="email",
        source_id=message_id,
        thread_id=thread_root(message_id, in_reply_to, references),
        portal_id=portal_id if portal_id is not None else directory.portal_of(who),
        who=who,
        name=name,
        marked_critical=marked_critical,
        subject=subject,
        text=text,
        created_at=created_at,
        **rest,
    )


def _email_events(req: Request, ctx: Context) -> list[Draft]:
    """The thread's first message opens the ticket; a reply updates it."""
    if req.thread_id == req.source_id.strip():
        return [opened(req, ctx)]
    return [updated(req, ctx, f"email:{req.source_id}")]


def normalize_email_form(p: EmailForm, ctx: Context) -> list[CloudEvent]:
    return events(email_form_drafts(p, ctx))


def email_form_drafts(p: EmailForm, ctx: Context) -> list[Draft]:
    name, sender = normalize_email_address(p.from_)
    text = p.text if p.text is not None else html_to_text(p.html or "")
    req = _email_request(
        message_id=p.message_id,
        in_reply_to=p.in_reply_to,
        references=p.references,
        portal_id=p.portal_id,
        sender=sender,
        name=name,
        user_id=p.form.user_id if p.form else None,
        marked_critical=bool(p.form and p.form.business_critical),
        subject=p.subject,
        text=text,
        created_at=p.received_at,
        directory=ctx.directory,
        source={"message_id": p.message_id, "form": True, "extra": unknown_fields(p)},
    )
    return _email_events(req, ctx)


def normalize_raw_email(mail: ParsedEmail, received_at: datetime, ctx: Context) -> list[CloudEvent]:
    return events(raw_email_drafts(mail, received_at, ctx))


def raw_email_drafts(mail: ParsedEmail, received_at: datetime, ctx: Context) -> list[Draft]:
    """The Date header is the create time; without a readable one, `received_at`."""
    if mail.date is not None:
        require_plausible(mail.date, "Date header")
    fwd = mail.forwarded
    source: dict[str, Any] = {"message_id": mail.message_id, "recipients": mail.recipients}
    if fwd is not None:
        source["forwarded"] = {
            "from": fwd.from_address,
            "subject": fwd.subject,
            "date": fwd.date.isoformat() if fwd.date else None,
        }
    req = _email_request(
        message_id=mail.message_id,
        in_reply_to=mail.in_reply_to,
        references=mail.references,
        portal_id=mail.portal_id,
        sender=mail.from_address,
        name=mail.from_name,
        user_id=None,
        marked_critical=mail.business_critical,
        subject=mail.subject,
        text=mail.text,
        created_at=mail.date or received_at,
        directory=ctx.directory,
        language=mail.language,
        attachments=mail.attachments,
        source=source,
    )
    return _email_events(req, ctx)


def normalize_phone(p: PhoneRequest, ctx: Context, region: str | None = None) -> list[CloudEvent]:
    return events(phone_drafts(p, ctx, region))


def phone_drafts(p: PhoneRequest, ctx: Context, region: str | None = None) -> list[Draft]:
    phone = normalize_phone_number(p.caller_number, region) if p.caller_number else None
    ivr = p.ivr
    req = Request(
        channel="phone",
        source_id=p.call_id,
        thread_id=p.call_id,
        portal_id=p.portal_id,
        who=Identity(user_id=p.caller_user_id, phone=phone),
        name=None,
        marked_critical=bool(ivr and ivr.business_critical),
        subject=("Callback request" if p.kind == "callback_request" else "Inbound call"),
        text=p.transcript or "",
        created_at=p.requested_at,
        language=ivr.language if ivr else None,
        call_kind=p.kind,
        source={
            "call_id": p.call_id,
            "caller_number": p.caller_number,
            "extra": unknown_fields(p),
        },
    )
    return [opened(req, ctx)]


def unknown_fields(model: BaseModel) -> dict[str, Any]:
    """Upstream fields the contract does not name, at any depth, kept as sent."""
    found: dict[str, Any] = dict(model.model_extra or {})
    for name in _nested_fields(type(model)):
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            nested = unknown_fields(value)
        elif isinstance(value, list):
            nested = {
                str(i): extra
                for i, item in enumerate(value)
                if isinstance(item, BaseModel) and (extra := unknown_fields(item))
            }
        else:
            continue
        if nested:
            found[name] = nested
    return found


@functools.cache
def _nested_fields(cls: type[BaseModel]) -> tuple[str, ...]:
    """The fields of `cls` whose type can hold a model (per message, only these are
    walked; the others are never looked at)."""
    return tuple(n for n, f in cls.model_fields.items() if _may_hold_model(f.annotation))


def _may_hold_model(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_may_hold_model(arg) for arg in get_args(annotation))
