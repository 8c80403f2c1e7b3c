"""Deliveries read from the socket but not handled yet, handed out one turn at a time.

Without an urgency test every turn takes everything that arrived, in order. With one
(`ServiceSpec.urgent`, a cheap look at the raw message), the consume loop reads ahead
as far as the prefetch window and a byte budget allow, and each turn hands out every
urgent delivery first, then at most `turn_size` others in arrival order. A request
marked business-critical behind a burst of chats is then handled as soon as it is in
the window, instead of after everything before it.

Acks stay safe out of order: the Acker sends a `multiple` ack only over a run of tags
that are all settled, and single acks otherwise.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

from services.runtime.messages import Inbound

# NOTE: the broker pushes up to PREFETCH_COUNT deliveries; what is not read stays in the
# socket and the broker. The byte budget keeps a window of large emails (up to 1 MiB
# each) from being held in memory all at once.
READ_AHEAD_BYTES = 64 * 1024 * 1024
TURN_SIZE = 100  # non-urgent deliveries handled per turn (one batch, one transaction)

Urgency = Callable[[Inbound], bool]


class _HasInbound(Protocol):
    @property
    def inbound(self) -> Inbound: ...


D = TypeVar("D", bound=_HasInbound)


class Arrivals(Generic[D]):
    def __init__(
        self,
        urgent: Urgency | None = None,
        turn_size: int = TURN_SIZE,
        budget_bytes: int = READ_AHEAD_BYTES,
    ) -> None:
        self._urgent_test = urgent
        self._turn_size = turn_size
        self._budget = budget_bytes
        self._urgent: list[D] = []
        self._others: deque[D] = deque()
        self._bytes = 0

    @property
    def reads_ahead(self) -> bool:
        return self._urgent_test is not None

    def add(self, delivery: D) -> None:
        self._bytes += len(delivery.inbound.body)
        if self._urgent_test is not None and self._is_urgent(delivery.inbound):
            self._urgent.append(delivery)
        else:
            self._others.append(delivery)

    def _is_urgent(self, inbound: Inbound) -> bool:
        assert self._urgent_test is not None
        try:
            return self._urgent_test(inbound)
        except Exception:  # a test that fails must not lose the delivery: handle it in order
            return False

    def full(self) -> bool:
        """Stop reading ahead: the held bodies reached the byte budget."""
        return self._bytes >= self._budget

    def should_stop_reading(self) -> bool:
        """An urgent delivery is waiting (handle it before reading on), or `full`."""
        return bool(self._urgent) or self.full()

    def __len__(self) -> int:
        return len(self._urgent) + len(self._others)

    def next_turn(self) -> tuple[list[D], list[D]]:
        """(every urgent delivery, then the next others) for this turn."""
        urgent, self._urgent = self._urgent, []
        if self._urgent_test is None:
            others, self._others = list(self._others), deque()
        else:
            count = min(self._turn_size, len(self._others))
            others = [self._others.popleft() for _ in range(count)]
        self._bytes -= sum(len(d.inbound.body) for d in (*urgent, *others))
        return urgent, others

    def clear(self) -> None:
        self._urgent, self._others, self._bytes = [], deque(), 0
