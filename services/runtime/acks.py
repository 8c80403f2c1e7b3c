"""Acking deliveries: on RabbitMQ one `multiple` ack covers a contiguous run of tags.

One ack frame per settled batch instead of one per message saves a write here and a
settle command in the broker's quorum queue for each message.
"""

from __future__ import annotations

from typing import Any


class Acker:
    def __init__(self, multiple: bool) -> None:
        self._multiple = multiple  # kombu's in-memory transport ignores `multiple`
        # Delivered on this channel, not yet settled, in delivery (= tag) order: the
        # lowest held tag is found at the front, without scanning the whole window.
        self._held: dict[int, None] = {}
        self._ready: list[Any] = []

    def received(self, message: Any) -> None:
        self._held[message.delivery_tag] = None

    def ack_later(self, message: Any) -> None:
        self._ready.append(message)

    def reject(self, message: Any, requeue: bool) -> None:
        self._held.pop(message.delivery_tag, None)
        message.reject(requeue=requeue)

    def flush(self) -> None:
        """Send the acks collected since the last flush: one `multiple` ack for those
        below the lowest tag still held, single acks for those above it (e.g. an urgent
        delivery handled ahead of the ones read before it)."""
        if not self._ready:
            return
        ready, self._ready = self._ready, []
        tags = {m.delivery_tag for m in ready}
        if not self._multiple:
            for message in ready:
                message.ack()
        else:
            # Safe: no delivery below `cut` is still held (e.g. waiting to retry).
            cut = next((t for t in self._held if t not in tags), None)
            below = [m for m in ready if cut is None or m.delivery_tag < cut]
            if below:
                max(below, key=lambda m: m.delivery_tag).ack(multiple=True)
            for message in ready:
                if cut is not None and message.delivery_tag > cut:
                    message.ack()
        for tag in tags:
            self._held.pop(tag, None)

    def reset(self) -> None:
        """After a reconnect the old channel's tags mean nothing: never ack them."""
        self._held, self._ready = {}, []
