"""The demo's scenario file and the bodies it publishes (no pipeline)."""

from __future__ import annotations

import email
import email.utils
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from services.demo import DEFAULT_SCENARIO, ScenarioError, load_scenario
from services.demo.bodies import prepare
from services.demo.pipeline import Seen
from services.demo.scenario import Step
from services.demo.state import DemoState, message_id

NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)
DEMO = DEFAULT_SCENARIO.parent


def test_the_default_scenario_loads_with_its_files_resolved() -> None:
    scenario = load_scenario(DEFAULT_SCENARIO)

    assert scenario.oncall == DEMO / "oncall.yaml"
    assert all(s.file is None or s.file.is_file() for s in scenario.steps)
    assert [s.media_type for s in scenario.steps if s.id == "invoice"] == ["message/rfc822"]


def test_created_moves_the_json_timestamps_into_the_past() -> None:
    step = Step.model_validate(
        {"id": "c", "channel": "chat", "file": DEMO / "chat.json", "created": "-4m42s"}
    )

    body = json.loads(prepare(step, NOW))

    assert body["started_at"] == "2026-11-27T09:55:18Z"
    assert [m["at"] for m in body["messages"]] == ["2026-11-27T09:55:18Z"]


def test_created_replaces_the_mime_date_header_only() -> None:
    step = Step.model_validate(
        {"id": "m", "channel": "email", "file": DEMO / "invoice.eml", "created": "-44m48s"}
    )

    raw = prepare(step, NOW)

    message = email.message_from_bytes(raw)
    assert email.utils.parsedate_to_datetime(message["Date"]) == datetime(
        2026, 11, 27, 9, 15, 12, tzinfo=UTC
    )
    assert len(message.get_all("Date") or []) == 1
    assert raw.split(b"\n\n", 1)[1] == (DEMO / "invoice.eml").read_bytes().split(b"\n\n", 1)[1]


def test_a_helpdesk_step_gets_its_ticket_and_now() -> None:
    step = Step(id="a", channel="helpdesk", body={"type": "acknowledged", "by": "kim"}, ticket="o")

    body = json.loads(prepare(step, NOW, ticket_id="T-email-0123456789abcdef"))

    assert body == {
        "type": "acknowledged",
        "by": "kim",
        "at": "2026-11-27T10:00:00Z",
        "ticket_id": "T-email-0123456789abcdef",
    }


def test_broken_json_is_sent_as_it_is() -> None:
    step = Step(id="b", channel="chat", body='{"conversation_id": ')

    assert prepare(step, NOW) == b'{"conversation_id": '


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "s.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_step_can_only_wait_for_an_earlier_step(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "steps:\n"
        "  - {id: ack, channel: helpdesk, ticket: mail, body: {type: acknowledged, by: k}}\n"
        "  - {id: mail, channel: email, body: {}}\n"
        "expect: [{event: sla.met, step: nobody}]\n",
    )

    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)

    assert str(caught.value) == f"{path}, line 2: steps[0].ticket: 'mail' is not an earlier step"


def test_missing_files_are_named_with_their_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "steps:\n  - id: a\n    channel: chat\n    file: gone.json\nexpect: [{event: sla.met}]\n",
    )

    with pytest.raises(ScenarioError) as caught:
        load_scenario(path)

    assert str(caught.value) == f"{path}, line 4: steps[0].file: no file {tmp_path / 'gone.json'}"


def seen(kind: str, subject: str | None = None, **data: object) -> Seen:
    return Seen(1.0, kind, subject, None, dict(data))


def test_an_outcome_matches_by_leading_words_step_and_escalation_fields() -> None:
    scenario = load_scenario(DEFAULT_SCENARIO)
    state = DemoState(scenario)
    state.observe(
        Seen(
            0.5,
            "ticket.opened.business_critical",
            "T-1",
            message_id("outage"),
            {"ticket": {"ticket_id": "T-1", "severity": "business_critical", "premium": True}},
        )
    )
    page = next(o for o in state.outcomes if o.expect.title == "page to level 2 on breach")

    state.observe(seen("escalation.sent", "T-1", reason="breached", level=1))
    state.observe(seen("escalation.sent", "T-2", reason="breached", level=2))
    assert page.at is None
    state.observe(seen("escalation.sent", "T-1", reason="breached", level=2))
    assert page.at == 1.0
    assert state.tickets["T-1"].step == "outage"
