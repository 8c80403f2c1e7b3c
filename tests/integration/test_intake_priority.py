"""Requests marked business-critical in a backlog of chats are handled first.

pika preloads `intake.inbound` with a chat marked business-critical, a backlog of
standard chats and then one support form marked business-critical, as an outage would
(many tickets at once); intake starts only then, against the real broker. Both opened
events must come out within the first turn of the read-ahead window, long before the
backlog's end, and every chat must still come out exactly once.
"""

from __future__ import annotations

import json

import pytest

from schemas.events import CloudEvent
from services.intake.main import IntakeSettings, bootstrap
from services.runtime.app import ServiceRunner
from services.runtime.metrics import RuntimeMetrics
from services.upstream import UpstreamPublisher
from tests.conftest import ROOT
from tests.integration.conftest import RunningService
from tests.support.capture import Capture
from tests.support.proxy import Proxy

INBOUND = ROOT / "examples" / "inbound"
PARAGRAPH = (
    "Hello, since the last update the export of our monthly report takes much longer "
    "than before and the totals column shows the numbers with a different rounding. "
) * 3


@pytest.mark.parametrize(
    ("backlog", "pace_s"),
    [(1500, 0.0), (600, 0.001)],
    ids=["direct", "deliveries-trickling-in"],
)
def test_marked_requests_overtake_a_backlog_of_chats(
    settings: IntakeSettings,
    events: Capture,
    upstream: UpstreamPublisher,
    backlog: int,
    pace_s: float,
) -> None:
    chat = json.loads((INBOUND / "chat.json").read_text())
    chat["messages"][0]["text"] = PARAGRAPH
    # one marked at each end: the first must not end the read of the window at start
    first = chat | {"conversation_id": "c-marked", "business_critical": True}
    upstream.publish("chat", json.dumps(first).encode())
    for i in range(backlog):
        upstream.publish("chat", json.dumps(chat | {"conversation_id": f"c-{i}"}).encode())
    form = json.loads((INBOUND / "email.json").read_text())
    form["form"] = {**(form.get("form") or {}), "business_critical": True}
    upstream.publish("email", json.dumps(form).encode())

    # Paced: what the broker sends intake comes through a proxy, ten deliveries a
    # millisecond or so (~0.1 s for this backlog), as from a loaded broker: the window
    # arrives while the first turns could already be handled. Before the backlog was
    # read in first, the second marked request came out ~590th of 602 here.
    proxy = Proxy.to(settings.amqp_url, pace_s) if pace_s else None
    if proxy is not None:
        settings = settings.model_copy(update={"amqp_url": proxy.url(settings.amqp_url)})
    service = RunningService(ServiceRunner(bootstrap(settings), settings, RuntimeMetrics.create()))
    service.start()
    try:
        received = events.take(backlog + 2, settle=0.5, timeout=60)
    finally:
        service.stop()
        if proxy is not None:
            proxy.close()

    keys = [r.routing_key for r in received]
    positions = [i for i, key in enumerate(keys) if key == "ticket.opened.business_critical"]
    assert len(positions) == 2
    assert max(positions) < 100, f"the marked requests came out {positions} of {len(keys)}"
    subjects = [CloudEvent.model_validate(r.json()).subject for r in received]
    assert len(subjects) == len(set(subjects)) == backlog + 2  # none lost, none twice
    assert keys.count("ticket.opened.standard") == backlog
