"""The confirmed publisher on its own, against the real broker."""

from __future__ import annotations

import time

from services.intake.main import IntakeSettings
from services.runtime.app import connection_factory, declare_topology
from services.runtime.errors import PublishRejected
from services.runtime.messages import Outgoing
from services.runtime.names import Names
from services.runtime.publisher import ConfirmedPublisher


def _publisher(settings: IntakeSettings) -> ConfirmedPublisher:
    declare_topology(settings)
    publisher = ConfirmedPublisher(
        connection_factory(settings), Names(settings.amqp_prefix), 5.0, 5.0
    )
    publisher.open()
    return publisher


def _wait(publisher: ConfirmedPublisher, seqs: list[int]) -> list[object]:
    publisher.wait(seqs, time.monotonic() + 5)
    return [publisher.take(seq) for seq in seqs]


def test_pipelined_publishes_are_all_confirmed(settings: IntakeSettings) -> None:
    publisher = _publisher(settings)
    try:
        seqs = [
            publisher.publish(Outgoing("support.events", "ticket.updated", b"{}", f"id-{i}"))
            for i in range(500)
        ]
        assert _wait(publisher, seqs) == [None] * 500
    finally:
        publisher.close()


def test_a_mandatory_publish_with_no_route_is_a_failure(settings: IntakeSettings) -> None:
    publisher = _publisher(settings)
    try:
        names = Names(settings.amqp_prefix)
        routed = Outgoing("", names.dead_letter_queue("intake"), b"x", "", mandatory=True)
        lost = Outgoing("", f"{settings.amqp_prefix}no.such.queue", b"y", "", mandatory=True)
        results = _wait(publisher, [publisher.publish(routed), publisher.publish(lost)])
        assert results[0] is None
        assert isinstance(results[1], PublishRejected)
        assert "unroutable" in str(results[1])
    finally:
        publisher.close()
