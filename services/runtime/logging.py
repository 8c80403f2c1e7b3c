"""structlog set-up: JSON by default, console with LOG_FORMAT=console; PII masked."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# A candidate number; `_mask_phone` keeps it unless it has enough digits to be one
# (7+ after a "+", 9+ without), so dates, times and counts stay readable.
_PHONE = re.compile(r"(?<![\w+-])(\+?\d)[\d ().-]{5,}(\d{2})(?![\w-])")


def _mask_phone(match: re.Match[str]) -> str:
    digits = sum(c.isdigit() for c in match.group(0))
    if digits < (7 if match.group(0).startswith("+") else 9):
        return match.group(0)
    return match.group(1) + "*" * 6 + match.group(2)


def mask_text(text: str) -> str:
    """ana@acme.example -> a***@acme.example; +31205550134 -> +3******34."""
    if "@" in text:  # the email pattern is the dearer scan; most values hold no "@"
        text = _EMAIL.sub(r"\1***@\2", text)
    return _PHONE.sub(_mask_phone, text)


def _mask(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v) for v in value]
    return value


# Fields whose values the services make themselves and that can never hold personal
# data: the per-message line is logged for every delivery, so they are not scanned.
# `message_id` and `correlation_id` come from upstream (an email's Message-ID may carry
# an address) and stay masked.
NEVER_PERSONAL = frozenset(
    {
        "timestamp",
        "level",
        "event",
        "service",
        "routing_key",
        "outcome",
        "attempt",
        "duration_ms",
        "event_id",
        "event_type",
        "ticket_id",
    }
)


def mask_personal_data(
    _: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Masks emails and phone numbers in every value logged at INFO and above."""
    if method_name == "debug":
        return event_dict
    for key, value in event_dict.items():
        if key not in NEVER_PERSONAL and value is not None and not isinstance(value, int | float):
            event_dict[key] = _mask(value)
    return event_dict


def configure_logging(fmt: str = "json", level: str = "info") -> None:
    renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if fmt == "console"
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    structlog.configure(
        # No contextvars merging: nothing binds any, and it costs every line a copy.
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            mask_personal_data,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
