"""The per-message log line: personal data masked, the service's own ids left readable."""

from __future__ import annotations

import json

import pytest
import structlog
from hypothesis import given
from hypothesis import strategies as st

from services.runtime.logging import (
    _EMAIL,
    _PHONE,
    NEVER_PERSONAL,
    _mask_phone,
    configure_logging,
    mask_text,
)


def _last_line(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    return json.loads(capsys.readouterr().err.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_upstream_ids_are_masked_and_own_ids_are_not(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "info")
    structlog.get_logger("t").info(
        "message.settled",
        message_id="<CAF=ana.ruiz@acme.example>",
        correlation_id="call from +31205550134",
        ticket_id="T-chat-0123456789abcdef",
        event_id="1aa98bf6-8724-5d3b-860c-2bd90e7d9d33",
        attempt=3,
        duration_ms=1.5,
        detail={"to": ["bo@acme.example"]},
    )
    line = _last_line(capsys)
    assert line["message_id"] == "<CAF=a***@acme.example>"
    assert line["correlation_id"] == "call from +3******34"
    assert line["detail"] == {"to": ["b***@acme.example"]}
    assert line["ticket_id"] == "T-chat-0123456789abcdef"
    assert (line["attempt"], line["duration_ms"]) == (3, 1.5)


def test_fields_left_unscanned_are_ones_the_services_make() -> None:
    # Anything an upstream controls (ids it sends, names, subjects, errors) is scanned.
    assert not NEVER_PERSONAL & {"message_id", "correlation_id", "error", "submitter", "to"}


def test_debug_lines_are_not_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "debug")
    structlog.get_logger("t").debug("x", submitter="ana@acme.example")
    assert _last_line(capsys)["submitter"] == "ana@acme.example"


PIECES = st.sampled_from(["ana.ruiz@acme.example", "+31 20 555 0134", "@", "x@y.z", " ", "a"])


@given(st.lists(PIECES | st.text(max_size=8)).map("".join))
def test_emails_are_masked_as_the_template_masks_them(text: str) -> None:
    expected = _EMAIL.sub(r"\1***@\2", text)
    assert mask_text(text) == _PHONE.sub(_mask_phone, expected)
