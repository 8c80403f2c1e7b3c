"""Reading canonical events off the bus, and the wall clock the services default to."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import ValidationError

from schemas.events import CloudEvent, EventData
from services.runtime.errors import PermanentError
from services.runtime.messages import Inbound


def now_utc() -> datetime:
    return datetime.now(UTC)


def parse_event(inbound: Inbound) -> tuple[CloudEvent, EventData]:
    """The envelope and its typed data; anything else can never succeed (dead-letter)."""
    try:
        event = CloudEvent.model_validate_json(inbound.body)
        return event, event.parsed()
    except (ValidationError, KeyError) as exc:
        raise PermanentError(f"not a canonical event: {exc}", reason="schema_violation") from exc
