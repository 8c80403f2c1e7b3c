"""py-amqp deliveries reach the loop as `Delivered`, except those kombu must decode."""

from __future__ import annotations

import zlib
from typing import Any

import amqp
import pytest
from kombu.exceptions import MessageStateError
from kombu.transport.pyamqp import Channel

from services.runtime.deliveries import Delivered, DeliveringConsumer


class FakeChannel:
    """What the consumer and the messages call on a py-amqp channel."""

    Message = Channel.Message
    message_to_python = Channel.message_to_python
    no_ack_consumers = None

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, bool]] = []

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.calls.append(("ack", tag, multiple))

    def basic_reject(self, tag: int, requeue: bool) -> None:
        self.calls.append(("reject", tag, requeue))


def delivery(channel: FakeChannel, tag: int, body: bytes, **headers: Any) -> amqp.Message:
    raw = amqp.Message(body, content_type="application/json", application_headers=headers)
    raw.channel = channel
    raw.delivery_info = {"delivery_tag": tag, "routing_key": "inbound.chat", "exchange": "x"}
    return raw


def consumer(channel: FakeChannel, got: list[Any]) -> DeliveringConsumer:
    errors: list[Any] = []
    c = DeliveringConsumer.__new__(DeliveringConsumer)  # no broker: only the callback path
    c.channel, c.accept, c.on_message = channel, None, got.append
    c.on_decode_error = lambda message, exc: errors.append((message, exc))
    return c


def test_a_plain_delivery_is_delivered_with_what_the_loop_reads() -> None:
    channel, got = FakeChannel(), []
    consumer(channel, got)._receive_callback(delivery(channel, 7, b"{}", trace="t"))
    [message] = got
    assert isinstance(message, Delivered)
    assert (message.body, message.content_type, message.delivery_tag) == (
        b"{}",
        "application/json",
        7,
    )
    assert message.headers == {"trace": "t"}
    assert message.delivery_info["routing_key"] == "inbound.chat"
    message.ack(multiple=True)
    assert channel.calls == [("ack", 7, True)]
    with pytest.raises(MessageStateError):
        message.reject(requeue=True)  # never settled twice


def test_a_compressed_delivery_goes_through_kombu() -> None:
    channel, got = FakeChannel(), []
    raw = delivery(channel, 8, zlib.compress(b"{}"), compression="application/x-gzip")
    consumer(channel, got)._receive_callback(raw)
    [message] = got
    assert not isinstance(message, Delivered)
    assert message.body == b"{}"  # kombu decompressed it
    message.reject(requeue=False)
    assert channel.calls == [("reject", 8, False)]
