"""`premium-support sla whatif`: read the recording, replay it twice, print the difference.

"Current" is what the services read (POLICY_FILE, ONCALL_FILE); "proposed" is the files
given (either omitted: the same as current). Nothing is published and no store is
opened: the replay keeps its clocks and notes in memory.
"""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from services.operator.guard import broker_errors, fail, load_settings

_AGO = re.compile(r"^\s*(\d+)\s*([dhm])\s*$")
_UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_since(text: str, now: datetime) -> datetime:
    """`7d`, `12h`, `90m` before `now`, or an RFC 3339 time with an offset."""
    m = _AGO.match(text)
    if m is not None:
        return now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise typer.BadParameter(
            f"{text!r}: write e.g. 7d, 12h, 90m or 2026-11-30T09:00:00Z", param_hint="--since"
        ) from None
    if when.tzinfo is None:
        raise typer.BadParameter(f"{text!r} has no UTC offset", param_hint="--since")
    return when


def _files(policy: Path | None, oncall: Path | None) -> tuple[Any, Any, dict[str, Any]]:
    """(current, proposed) policies and rosters, and their names for the report."""
    from services.operator import whatif_replay as replay
    from services.runtime.yaml_files import ConfigFileError
    from services.sla_timer.main import SlaSettings

    current_policy = load_settings(SlaSettings).policy_file
    current_oncall = os.environ.get("ONCALL_FILE") or None
    if current_oncall is None:
        fail("ONCALL_FILE is not set: point it at the on-call file the notifier reads", 2)
    try:
        policies = replay.load_policy(current_policy), replay.load_policy(policy or current_policy)
        rosters = replay.load_oncall(current_oncall), replay.load_oncall(oncall or current_oncall)
    except ConfigFileError as exc:
        fail(str(exc), 2)

    def named(p: Path | str | None) -> str | None:
        return str(p) if p is not None else None

    files = {
        "current": {"policy": named(current_policy), "oncall": named(current_oncall)},
        "proposed": {
            "policy": named(policy or current_policy),
            "oncall": named(oncall or current_oncall),
        },
    }
    return policies, rosters, files


def whatif(
    policy: Annotated[Path | None, typer.Option(help="The proposed SLA policy file")] = None,
    oncall: Annotated[Path | None, typer.Option(help="The proposed on-call file")] = None,
    since: Annotated[
        str | None, typer.Option(help="From this long ago (7d, 12h) or this time; default all")
    ] = None,
    from_file: Annotated[
        Path | None, typer.Option("--from-file", help="JSON lines exported from the stream")
    ] = None,
    export: Annotated[
        Path | None, typer.Option(help="Also write the events read, as JSON lines")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON document for scripts")] = False,
    html: Annotated[
        Path | None, typer.Option("--html", help="Write a report with charts to this file")
    ] = None,
) -> None:
    """Replay the recorded events of support.events.log (or --from-file) under the current
    POLICY_FILE / ONCALL_FILE and under the proposed files: warnings, breaches and pages
    side by side, the tickets whose outcome changes, pages per person per day. Publishes
    nothing and changes no store."""
    from services.operator.config import OperatorSettings
    from services.operator.whatif import simulate
    from services.operator.whatif_report import Window, compare
    from services.operator.whatif_stream import bounds, read_file, read_stream
    from services.operator.whatif_stream import export as write_export

    now = datetime.now(UTC)
    start = parse_since(since, now) if since is not None else None
    (cur_policy, new_policy), (cur_oncall, new_oncall), files = _files(policy, oncall)
    if from_file is not None:
        with broker_errors("", "sla whatif"):
            recorded = read_file(from_file, start)
        source, until = str(from_file), None
    else:
        settings = load_settings(OperatorSettings)
        if settings.is_memory:
            fail("AMQP_URL is the in-memory transport, which keeps no stream: use --from-file", 2)
        with broker_errors(settings.amqp_url, "sla whatif"):
            recorded = read_stream(settings, start, now)
        source, until = "support.events.log", now
    if export is not None:
        write_export(recorded, export)
    first, last = bounds(recorded.events)
    window = Window(source, len(recorded.events), first, last, until or last)
    current = simulate(recorded.events, cur_policy, cur_oncall, until)
    proposed = simulate(recorded.events, new_policy, new_oncall, until)
    doc = compare(current, proposed, window, files)
    doc["window"]["unreadable"] = recorded.unreadable + current.unreadable
    if html is not None:
        from services.operator.whatif_html import whatif_html

        html.write_text(whatif_html(doc), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps(doc, indent=2))
        return
    from services.operator.literal import console
    from services.operator.whatif_render import whatif_tables

    console().print(whatif_tables(doc))
