"""Text people read, without the characters that make it say something else (pure).

Customer text reaches an on-call person's screen. Bidirectional overrides and isolates
reorder what is shown (a subject can read as another ticket's, a name as someone
else's), zero-width characters hide words from a reader and split them for a search,
and control characters move the cursor or ring bells in a terminal. Intake removes them
from a ticket's subject, names and text; the notifier removes them again before it
renders, because it must not trust what an event carries.

Removed (`_RANGES`): C0 and C1 control characters except tab and line feed (a carriage
return, NEL and U+2028/U+2029 end a line: they become a line feed first), the zero-width
characters and direction marks (U+200B-U+200F, U+2060-U+2064, U+FEFF and kin), the
bidirectional embeddings, overrides (U+202A-U+202E) and isolates (U+2066-U+2069).
Removing the zero-width joiner splits emoji sequences (a family emoji shows as its
members): a notification is read for its words, so that is the price.
"""

from __future__ import annotations

import re
from dataclasses import fields, is_dataclass, replace
from typing import Any

# (first, last) code points removed; tab and line feed are kept.
_RANGES = (
    (0x00, 0x08),
    (0x0B, 0x1F),  # C0 but tab and line feed
    (0x7F, 0x9F),  # DEL and C1
    (0x061C, 0x061C),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x2028, 0x2029),
    (0x202A, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
)
_STRIP = re.compile("[" + "".join(f"\\u{a:04x}-\\u{b:04x}" for a, b in _RANGES) + "]+")
_LINE_ENDS = re.compile("\r\n|[\r\x85\u2028\u2029]")

REMOVED = frozenset(chr(c) for first, last in _RANGES for c in range(first, last + 1))
"""Every code point that no cleaned text contains (for tests and callers that check)."""


# ASCII characters of REMOVED, and the carriage return (a line end): text without any of
# them and without non-ASCII characters is clean as it is.
_ASCII_CHANGED = bytes([*range(0x00, 0x09), *range(0x0B, 0x20), 0x7F])


def _plain_ascii(text: str) -> bool:
    """Nothing to clean: every message's text is checked, and the pattern's scan costs
    ~50x this C-level test (~1 us for 500 characters)."""
    if not text.isascii():
        return False
    raw = text.encode("ascii")
    return len(raw.translate(None, _ASCII_CHANGED)) == len(raw)


def clean_text(text: str) -> str:
    """`text` with its line ends as line feeds and every character of `REMOVED` gone."""
    if _plain_ascii(text):
        return text
    return _STRIP.sub("", _LINE_ENDS.sub("\n", text))


def clean_optional(text: str | None) -> str | None:
    return None if text is None else clean_text(text)


def strip_controls(value: Any) -> Any:
    """`value` (a string, or dicts, lists, tuples and dataclasses of them) with every
    character of `REMOVED` deleted and none turned into a line feed: a rendered message
    keeps its shape, and a one-line field (a mail subject) stays one line."""
    if isinstance(value, str):
        return value if _plain_ascii(value) else _STRIP.sub("", value)
    if isinstance(value, dict):
        return {strip_controls(k): strip_controls(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(strip_controls(v) for v in value)
    if is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: strip_controls(getattr(value, f.name)) for f in fields(value)}
        return replace(value, **changes)
    return value
