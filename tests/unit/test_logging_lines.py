"""The consume loop's buffered lines read exactly as the structlog JSON chain's."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from services.runtime.deliveries import Delivery
from services.runtime.logging import configure_logging, line_buffer
from services.runtime.messages import Inbound
from services.runtime.settling import Settling

FIELDS: dict[str, Any] = {
    "service": "intake",
    "routing_key": "inbound.email",
    "message_id": "<CAF=ana.ruiz@acme.example>",
    "correlation_id": "call from +31205550134",
    "outcome": "retry_scheduled",
    "attempt": 2,
    "duration_ms": 0.125,
    "error": "no route for bo@acme.example",
    "retry_in_s": 0.5,
    "detail": {"to": ["bo@acme.example"], "n": None},
    "ticket_id": "T-chat-0123456789abcdef",
    "path": Path("/tmp/x"),  # not JSON: rendered by repr, as structlog does
    "nothing": None,
    "text": "Grüße, ünïcode",
}


def _lines(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.strip().splitlines()]


def test_buffered_lines_equal_the_chain_and_leave_in_one_write(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json", "info")
    buffer = line_buffer()
    assert buffer is not None
    structlog.get_logger("runtime").warning("message.settled", **FIELDS)
    chain = capsys.readouterr().err
    buffer.add("warning", "message.settled", dict(FIELDS))
    buffer.add("info", "message.settled", dict(FIELDS))
    assert capsys.readouterr().err == ""  # held until the flush
    buffer.flush()
    ours = capsys.readouterr().err
    expected = _lines(chain)[0]
    got = _lines(ours)
    assert len(got) == 2
    for line in (expected, *got):
        stamp = line.pop("timestamp")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z", stamp)
        at = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
        assert abs((datetime.now(UTC) - at).total_seconds()) < 5
    assert got[0] == expected
    assert list(got[0]) == list(expected)  # the same key order
    assert got[1] == expected | {"level": "info"}
    # byte for byte too, but for the timestamp
    assert ours.splitlines()[0].split(', "timestamp"')[0] == chain.split(', "timestamp"')[0]


def test_level_filter_follows_the_configuration() -> None:
    configure_logging("json", "warning")
    buffer = line_buffer()
    assert buffer is not None
    assert not buffer.enabled("info")
    assert buffer.enabled("warning") and buffer.enabled("error")


def test_no_buffer_unless_the_json_chain_is_in_force() -> None:
    configure_logging("console", "info")
    assert line_buffer() is None
    configure_logging("json", "info")
    with capture_logs():
        assert line_buffer() is None  # captured events must reach the capture
    assert line_buffer() is not None
    try:
        structlog.configure(logger_factory=structlog.PrintLoggerFactory())
        assert line_buffer() is None  # reconfigured by someone else
    finally:
        configure_logging("console", "warning")


class _Loop(Settling):
    """The consume loop's line-writing part alone."""

    def __init__(self, lines: Any) -> None:
        self.service, self._info_enabled, self._lines = "intake", True, lines


@pytest.mark.parametrize(
    ("outcome", "extra", "level"),
    [
        ("acked", {"event_id": "e-1", "ticket_id": "T-1", "event_type": "ticket.opened"}, "info"),
        ("retry_scheduled", {"error": "down for bo@acme.example", "retry_in_s": 0.5}, "warning"),
        ("requeued", {"error": "nacked"}, "error"),
        ("duplicate", None, "info"),
    ],
)
def test_the_settled_line_of_each_outcome(
    capsys: pytest.CaptureFixture[str], outcome: str, extra: dict[str, Any] | None, level: str
) -> None:
    configure_logging("json", "info")
    inbound = Inbound(b"{}", "inbound.email", "x", message_id="<m@acme.example>")
    delivery = Delivery(None, inbound, 1, attempts=2)
    loop = _Loop(line_buffer())
    loop._log(delivery, outcome, extra, level="error" if level == "error" else "")
    loop._flush_lines()
    [line] = _lines(capsys.readouterr().err)
    assert list(line)[:7] == [*list(FIELDS)[:4], "outcome", "attempt", "duration_ms"]
    assert list(line)[7:] == [*(extra or {}), "event", "level", "timestamp"]
    assert (line["outcome"], line["level"], line["attempt"]) == (outcome, level, 2)
    assert line["message_id"] == "<m***@acme.example>"
    if extra and "error" in extra:
        assert line["error"] == extra["error"].replace("bo@", "b***@")
