"""Intake's edge: bytes and content types in, canonical events out.

Everything that can be wrong with an inbound message becomes a PermanentError with a
specific reason here, so the runtime dead-letters it with that reason: a timestamp
outside the years 2000-2100 is `invalid_timestamp` (see services/intake/timestamps.py),
any other mismatch with the model a `schema_violation`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from pydantic import TypeAdapter, ValidationError

from schemas.events import CloudEvent
from schemas.inbound import (
    INVALID_TIMESTAMP,
    ChatRequest,
    EmailForm,
    HelpdeskUpdate,
    PhoneRequest,
)
from services.intake.accounts import AccountsDirectory
from services.intake.helpdesk import normalize_helpdesk
from services.intake.mime import parse_mime
from services.intake.normalize import (
    Context,
    Draft,
    chat_drafts,
    email_form_drafts,
    events,
    phone_drafts,
    raw_email_drafts,
)
from services.intake.timestamps import DEFAULT_MAX_SKEW
from services.runtime.errors import PermanentError
from services.runtime.messages import Inbound, Outgoing

T = TypeVar("T")
JSON_TYPES = {"application/json", "text/json"}
MIME_TYPES = {"message/rfc822"}
_HELPDESK = TypeAdapter[Any](HelpdeskUpdate)


def _content_type(inbound: Inbound) -> str:
    # NOTE: upstreams often omit content_type; JSON is the documented default.
    return (inbound.content_type or "application/json").split(";")[0].strip().lower()


def _require_json(inbound: Inbound) -> None:
    ctype = _content_type(inbound)
    if ctype not in JSON_TYPES:
        raise PermanentError(
            f"content type {ctype!r} is not accepted on {inbound.routing_key}; "
            "send application/json",
            reason="unsupported_content_type",
        )


def _validation_error(exc: ValidationError, what: str) -> PermanentError:
    errors = exc.errors()
    if any(err["type"] == "json_invalid" for err in errors):
        # Strict UTF-8, bounded nesting, no lone surrogates: what json.loads would let
        # through (UTF-16, RecursionError, 5000-digit ints) fails here, permanently.
        return PermanentError(
            f"body is not valid UTF-8 JSON: {errors[0]['msg']}", reason="invalid_json"
        )
    problems = "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '(body)'}: {err['msg']}" for err in errors[:5]
    )
    # Only implausible timestamps and nothing else wrong: say so; mixed with other
    # problems it is a schema violation (whose x-error lists the timestamp too).
    if all(err["type"] == INVALID_TIMESTAMP for err in errors):
        return PermanentError(f"{what}: {problems}", reason=INVALID_TIMESTAMP)
    return PermanentError(f"{what}: {problems}", reason="schema_violation")


def _parse(inbound: Inbound, validate_json: Callable[[bytes], T], what: str) -> T:
    """JSON bytes straight into the model (one pass in pydantic-core, no dict between)."""
    _require_json(inbound)
    try:
        return validate_json(inbound.body)
    except ValidationError as exc:
        raise _validation_error(exc, what) from exc


def correlation_id(inbound: Inbound) -> str:
    """The inbound message's own id; without one, a digest of its body (deterministic)."""
    return (
        inbound.message_id
        or inbound.correlation_id
        or "sha256:" + hashlib.sha256(inbound.body).hexdigest()[:32]
    )


class IntakeHandlers:
    def __init__(
        self,
        directory: AccountsDirectory,
        phone_region: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_clock_skew: timedelta = DEFAULT_MAX_SKEW,
    ) -> None:
        self._directory = directory
        self._region = phone_region
        self._clock = clock
        self._max_skew = max_clock_skew

    def routes(self) -> dict[str, Callable[[Inbound], list[Outgoing]]]:
        def serialized(fn: Callable[[Inbound], list[Draft]]) -> Callable[[Inbound], list[Outgoing]]:
            return lambda inbound: [draft.outgoing() for draft in fn(inbound)]

        def wrapped(
            fn: Callable[[Inbound], list[CloudEvent]],
        ) -> Callable[[Inbound], list[Outgoing]]:
            return lambda inbound: [Outgoing.event(event) for event in fn(inbound)]

        return {
            "inbound.chat": serialized(self._chat),
            "inbound.email": serialized(self._email),
            "inbound.phone": serialized(self._phone),
            "inbound.helpdesk": wrapped(self.helpdesk),
        }

    def _ctx(self, inbound: Inbound) -> Context:
        return Context(self._directory, correlation_id(inbound), self._clock(), self._max_skew)

    def chat(self, inbound: Inbound) -> list[CloudEvent]:
        return events(self._chat(inbound))

    def phone(self, inbound: Inbound) -> list[CloudEvent]:
        return events(self._phone(inbound))

    def email(self, inbound: Inbound) -> list[CloudEvent]:
        return events(self._email(inbound))

    def _chat(self, inbound: Inbound) -> list[Draft]:
        payload = _parse(inbound, ChatRequest.model_validate_json, "ChatRequest")
        return chat_drafts(payload, self._ctx(inbound))

    def _phone(self, inbound: Inbound) -> list[Draft]:
        payload = _parse(inbound, PhoneRequest.model_validate_json, "PhoneRequest")
        return phone_drafts(payload, self._ctx(inbound), self._region)

    def _email(self, inbound: Inbound) -> list[Draft]:
        ctx = self._ctx(inbound)
        if _content_type(inbound) in MIME_TYPES:
            return raw_email_drafts(parse_mime(inbound.body), ctx.now, ctx)
        payload = _parse(inbound, EmailForm.model_validate_json, "EmailForm")
        return email_form_drafts(payload, ctx)

    def helpdesk(self, inbound: Inbound) -> list[CloudEvent]:
        update = _parse(inbound, _HELPDESK.validate_json, "helpdesk update")
        return normalize_helpdesk(update, correlation_id(inbound), self._clock(), self._max_skew)
