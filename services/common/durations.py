"""Duration strings of the configuration files: `30m`, `1h`, `8h30m`, `90s`, `1h 5m 30s`.

Hours, minutes and seconds in that order, each optional but at least one present. Days
(`1d`) are rejected on purpose: "a day" is ambiguous between 24 hours and a business
day; write `24h` (or, in the SLA policy, `1 business_day`).
"""

from __future__ import annotations

import re
from datetime import timedelta

_DURATION = re.compile(r"^\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")
_HINT = "use e.g. 30m, 1h, 8h30m, 90s"


def parse_duration(text: object) -> timedelta:
    """Parse `8h30m`-style text into a timedelta; ValueError with a hint otherwise."""
    if isinstance(text, timedelta):
        return text
    if not isinstance(text, str):
        raise ValueError(f"expected a duration string ({_HINT}), got {text!r}")
    m = _DURATION.match(text)
    if m is None or not any(m.groups()):
        extra = " (days are ambiguous: write 24h or '1 business_day')" if "d" in text else ""
        raise ValueError(f"bad duration {text!r}: {_HINT}{extra}")
    h, mi, s = (int(g) if g else 0 for g in m.groups())
    return timedelta(hours=h, minutes=mi, seconds=s)


def format_duration(value: timedelta) -> str:
    """The inverse of `parse_duration` for whole seconds: `timedelta(minutes=90)` -> `1h30m`."""
    total = int(value.total_seconds())
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    parts = [f"{n}{u}" for n, u in ((h, "h"), (m, "m"), (s, "s")) if n]
    return "".join(parts) or "0s"
