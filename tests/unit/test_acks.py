"""The Acker's one `multiple` ack must never cover a delivery that is still held."""

from __future__ import annotations

from services.runtime.acks import Acker


class FakeMessage:
    def __init__(self, tag: int, log: list[tuple[str, int, bool]]) -> None:
        self.delivery_tag = tag
        self._log = log

    def ack(self, multiple: bool = False) -> None:
        self._log.append(("ack", self.delivery_tag, multiple))

    def reject(self, requeue: bool) -> None:
        self._log.append(("reject", self.delivery_tag, requeue))


def _acker(tags: range, multiple: bool = True) -> tuple[Acker, dict[int, FakeMessage], list]:
    log: list[tuple[str, int, bool]] = []
    acker = Acker(multiple=multiple)
    messages = {t: FakeMessage(t, log) for t in tags}
    for message in messages.values():
        acker.received(message)
    return acker, messages, log


def test_a_contiguous_run_is_one_multiple_ack() -> None:
    acker, messages, log = _acker(range(1, 6))
    for tag in (1, 2, 3):
        acker.ack_later(messages[tag])
    acker.flush()
    assert log == [("ack", 3, True)]


def test_deliveries_above_a_held_one_are_acked_singly() -> None:
    acker, messages, log = _acker(range(1, 6))
    for tag in (1, 3, 4):  # 2 is waiting for a retry
        acker.ack_later(messages[tag])
    acker.flush()
    assert log == [("ack", 1, True), ("ack", 3, False), ("ack", 4, False)]
    acker.ack_later(messages[2])
    acker.flush()
    assert log[-1] == ("ack", 2, True)  # nothing below 2 is held any more


def test_one_handled_ahead_does_not_turn_the_run_into_single_acks() -> None:
    acker, messages, log = _acker(range(1, 301))
    # a turn: the urgent delivery 250, then 1-100 in order; 101-249 are still held
    for tag in (250, *range(1, 101)):
        acker.ack_later(messages[tag])
    acker.flush()
    assert log == [("ack", 100, True), ("ack", 250, False)]
    for tag in range(101, 201):
        acker.ack_later(messages[tag])
    acker.flush()
    assert log[-1] == ("ack", 200, True)


def test_rejected_deliveries_no_longer_block_a_multiple_ack() -> None:
    acker, messages, log = _acker(range(1, 4))
    acker.reject(messages[1], requeue=True)
    acker.ack_later(messages[2])
    acker.ack_later(messages[3])
    acker.flush()
    assert log == [("reject", 1, True), ("ack", 3, True)]


def test_in_memory_transport_acks_one_by_one() -> None:
    acker, messages, log = _acker(range(1, 3), multiple=False)
    acker.ack_later(messages[1])
    acker.ack_later(messages[2])
    acker.flush()
    assert log == [("ack", 1, False), ("ack", 2, False)]
