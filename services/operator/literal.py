"""Untrusted text shown as text (pure).

Dead letters carry whatever a sender wrote: Rich markup (`[/]`, `[bold red]`), emoji
shortcodes (`:warning:`), ANSI escape sequences, control and bidirectional characters.
Everything the operator tools print from a message goes through `literal` (a Rich
`Text`, never parsed as markup) or `printable` (a plain string); both replace control
characters by a visible escape (`\\x1b`, `\\u202e`) so the terminal never acts on them.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from rich.console import Console
from rich.text import Text

# C0 (but tab and line feed) and C1 controls, DEL, and the invisible format characters
# that reorder or hide text: direction marks, embeddings, overrides, isolates, zero widths.
_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
_ON_ONE_LINE = re.compile(f"[{_CONTROLS}\t\n]")
_KEEP_LINES = re.compile(f"[{_CONTROLS}]")
WIDE = 1000  # columns when stdout is no terminal: tables stay whole, ids unbroken


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: Any, lines: bool = False) -> str:
    """`value` as a string the terminal shows as it is; `lines` keeps tabs and newlines."""
    return (_KEEP_LINES if lines else _ON_ONE_LINE).sub(_escape, str(value))


def literal(value: Any, lines: bool = False, style: str = "") -> Text:
    """A Rich Text of `value`: no markup, no emoji codes, no control characters."""
    return Text(printable(value, lines), style=style)


def console() -> Console:
    """A console that interprets nothing in the strings it is given; when stdout is not a
    terminal (a pipe, a file, a test) and COLUMNS is unset, wide enough that no id in a
    table is cut or folded, so what is printed can be copied whole."""
    tty = sys.stdout.isatty()
    width = None if tty or os.environ.get("COLUMNS") else WIDE
    return Console(markup=False, emoji=False, highlight=False, width=width)
