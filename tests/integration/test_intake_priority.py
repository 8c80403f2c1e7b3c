"""A request marked business-critical behind a backlog of chats is handled first.

pika preloads `intake.inbound` with a backlog of standard chats and then one support
form marked business-critical, as an outage would (many tickets at once); intake starts
only then, against the real broker. Its opened event must come out within the first
turn of the read-ahead window, long before the backlog's end, and every chat must still
come out exactly once.
"""

from __future__ import annotations

import json

from schemas.events import CloudEvent
from services.intake.main import IntakeSettings, bootstrap
from services.runtime.app import ServiceRunner
from services.runtime.metrics import RuntimeMetrics
from services.upstream import UpstreamPublisher
from tests.conftest import ROOT
from tests.integration.conftest import RunningService
from tests.support.capture import Capture

INBOUND = ROOT / "examples" / "inbound"
BACKLOG = 1500
PARAGRAPH = (
    "Hello, since the last update the export of our monthly report takes much longer "
    "than before and the totals column shows the numbers with a different rounding. "
) * 3


def test_marked_request_overtakes_a_backlog_of_chats(
    settings: IntakeSettings, events: Capture, upstream: UpstreamPublisher
) -> None:
    chat = json.loads((INBOUND / "chat.json").read_text())
    chat["messages"][0]["text"] = PARAGRAPH
    for i in range(BACKLOG):
        upstream.publish("chat", json.dumps(chat | {"conversation_id": f"c-{i}"}).encode())
    form = json.loads((INBOUND / "email.json").read_text())
    form["form"] = {**(form.get("form") or {}), "business_critical": True}
    upstream.publish("email", json.dumps(form).encode())

    service = RunningService(ServiceRunner(bootstrap(settings), settings, RuntimeMetrics.create()))
    service.start()
    try:
        received = events.take(BACKLOG + 1, settle=0.5, timeout=60)
    finally:
        service.stop()

    keys = [r.routing_key for r in received]
    position = keys.index("ticket.opened.business_critical")
    assert position < 100, f"the marked request came out {position}th of {len(keys)}"
    subjects = [CloudEvent.model_validate(r.json()).subject for r in received]
    assert len(subjects) == len(set(subjects)) == BACKLOG + 1  # none lost, none twice
    assert keys.count("ticket.opened.standard") == BACKLOG
