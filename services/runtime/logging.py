"""structlog set-up: JSON by default, console with LOG_FORMAT=console; PII masked."""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
import time
from collections.abc import Callable, MutableMapping
from typing import Any, TextIO

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


def _mask_email(match: re.Match[str]) -> str:
    # what the template r"\1***@\2" gives; Python 3.11 expands a template in Python
    # for every match, at twice the cost of the whole scan
    return match.group(1) + "***@" + match.group(2)


def mask_text(text: str) -> str:
    """ana@acme.example -> a***@acme.example; +31205550134 -> +3******34."""
    if "@" in text:  # the email pattern is the dearer scan; most values hold no "@"
        text = _EMAIL.sub(_mask_email, text)
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
    return _mask_fields(event_dict)


def _mask_fields(fields: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in fields.keys() - NEVER_PERSONAL:  # the few left, not a test per field
        value = fields[key]
        if value is not None and not isinstance(value, int | float):
            fields[key] = _mask(value)
    return fields


def _encoder() -> Callable[[Any], str]:
    """json.dumps(obj, default=_fallback) without building an encoder per call (which
    JSONEncoder.encode does): the C encoder, made once."""
    make = json.encoder.c_make_encoder  # type: ignore[attr-defined]
    if make is None:  # a Python without the C accelerator
        return json.JSONEncoder(default=_fallback).encode
    # NOTE: markers=None: no circular-reference check; log fields are flat values.
    iterencode = make(
        None, _fallback, json.encoder.encode_basestring_ascii, None, ": ", ", ", False, False, True
    )
    return lambda obj: "".join(iterencode(obj, 0))


def _fallback(obj: Any) -> Any:  # what structlog's JSONRenderer does with other types
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


class LineBuffer:
    """The consume loop's own log lines, rendered as the JSON chain renders them (same
    keys in the same order, the same masking) without the chain, and written in one
    write per turn instead of one per message.

    NOTE: a crash loses at most the lines of the turn in progress; those deliveries
    were not acked yet either, so they come back and are logged again."""

    def __init__(self, file: TextIO, min_level: int) -> None:
        self._out = structlog.WriteLogger(file)  # its lock keeps lines of threads apart
        self._min = min_level
        self._lines: list[str] = []
        self._encode = _encoder()
        self._second = -1  # the whole second `_stamp` holds the text of
        self._stamp = ""

    def enabled(self, level: str) -> bool:
        return logging.getLevelNamesMapping()[level.upper()] >= self._min

    def add(self, level: str, event: str, fields: dict[str, Any]) -> None:
        """`fields` (taken, not copied) as `getattr(log, level)(event, **fields)` would
        log them: masked as `mask_personal_data`, then event, level and timestamp."""
        _mask_fields(fields)
        fields["event"] = event
        fields["level"] = level
        fields["timestamp"] = self._timestamp()
        self._lines.append(self._encode(fields))

    def _timestamp(self) -> str:
        """TimeStamper(fmt="iso", utc=True)'s text, the date and time formatted once a
        second (as datetime.isoformat: no fraction when the microseconds are 0)."""
        now = time.time()
        second = int(now)
        if second != self._second:
            at = datetime.datetime.fromtimestamp(second, tz=datetime.UTC)
            self._second, self._stamp = second, at.isoformat()[:19]
        micros = int((now - second) * 1_000_000)
        return f"{self._stamp}.{micros:06d}Z" if micros else f"{self._stamp}Z"

    def flush(self) -> None:
        if self._lines:
            lines, self._lines = self._lines, []
            self._out.msg("\n".join(lines))


# What configure_logging installed for JSON output (processors, logger factory and
# wrapper class; the file and level), so a LineBuffer is made only while that is the
# configuration in force (not, say, while a test captures events with structlog.testing).
_json_config: tuple[tuple[Any, Any, Any], TextIO, int] | None = None
_CONFIG_KEYS = ("processors", "logger_factory", "wrapper_class")


def line_buffer() -> LineBuffer | None:
    """A LineBuffer rendering like the configured JSON chain, or None when the chain in
    force is another (console output, captured events): then log through structlog."""
    if _json_config is None:
        return None
    (processors, *others), file, level = _json_config
    config = structlog.get_config()
    # NOTE: structlog.testing.capture_logs swaps the processors inside the same list.
    now = config["processors"]
    same = len(now) == len(processors) and all(a is b for a, b in zip(now, processors, strict=True))
    if not same or any(config[k] is not v for k, v in zip(_CONFIG_KEYS[1:], others, strict=True)):
        return None
    return LineBuffer(file, level)


def configure_logging(fmt: str = "json", level: str = "info") -> None:
    global _json_config
    renderer: Any = (
        structlog.dev.ConsoleRenderer()
        if fmt == "console"
        else structlog.processors.JSONRenderer(sort_keys=False)
    )
    # No contextvars merging: nothing binds any, and it costs every line a copy.
    processors = [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        mask_personal_data,
        renderer,
    ]
    min_level = logging.getLevelNamesMapping()[level.upper()]
    factory = structlog.WriteLoggerFactory(file=sys.stderr)
    wrapper = structlog.make_filtering_bound_logger(min_level)
    structlog.configure(
        processors=processors,
        wrapper_class=wrapper,
        logger_factory=factory,
        cache_logger_on_first_use=False,
    )
    installed = (tuple(processors), factory, wrapper)
    _json_config = None if fmt == "console" else (installed, sys.stderr, min_level)
