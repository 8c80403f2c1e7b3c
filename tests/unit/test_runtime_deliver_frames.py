"""A basic.deliver parsed from the read buffer is what py-amqp makes of the same bytes;
anything the fast path does not take is left in the buffer for py-amqp."""

from __future__ import annotations

import struct
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import amqp
import pytest
from amqp import spec
from amqp.method_framing import frame_handler, frame_writer
from amqp.serialization import decode_properties_basic, dumps, loads
from hypothesis import given
from hypothesis import strategies as st

from services.runtime.deliver_frames import deliver_args, split_delivery, take_delivery
from services.runtime.deliveries import Delivered, DeliveringConsumer, to_inbound

FRAME_MAX = 131072
ARGS = ("amq.ctag-x1", 42, True, "t1.support.inbound", "inbound.email")


class _Capture:
    def __init__(self, frame_max: int) -> None:
        self.frame_max, self.bytes_sent = frame_max, 0
        self.data = b""

    def write(self, data: Any) -> None:
        self.data += bytes(data)


def deliver(
    body: bytes,
    args: tuple[Any, ...] = ARGS,
    channel: int = 1,
    frame_max: int = FRAME_MAX,
    **props: Any,
) -> bytes:
    """The frames of a basic.deliver as the broker sends them (py-amqp's frame writer)."""
    capture = _Capture(frame_max)
    message = amqp.Message(body, **props)
    frame_writer(capture, capture)(1, channel, spec.Basic.Deliver, dumps("sLbss", args), message)
    return capture.data


def py_amqp_reads(data: bytes) -> tuple[int, list[Any], amqp.Message]:
    """(channel, method arguments, message) as py-amqp's frame handler reads `data`."""
    got: list[Any] = []
    handler = frame_handler(SimpleNamespace(bytes_recv=0), lambda *a: got.append(a))
    pos = 0
    while pos < len(data):
        frame_type, channel, size = struct.unpack_from(">BHI", data, pos)
        handler((frame_type, channel, data[pos + 7 : pos + 7 + size]))
        pos += 8 + size
    [(channel, sig, payload, message)] = got
    assert sig == spec.Basic.Deliver
    return channel, loads(amqp.Channel._METHODS[sig].args, payload, 4)[0], message


def ours(data: bytes) -> tuple[int, list[Any], dict[str, Any], bytes]:
    split = split_delivery(data, 0)
    assert split is not None
    channel, end, _, args, properties, body = split
    assert end == len(data)
    return channel, list(deliver_args(args)), decode_properties_basic(properties, 0)[0], body


HEADERS = {
    "x-delivery-count": 3,
    "x-death": [{"count": 1, "queue": "q", "reason": "rejected", "time": 0}],
    "nested": {"a": {"b": [1, "two", True, None, 2.5]}},
    "bytes": b"\xff\xfe",
    "big": 2**40,
    "negative": -1000,
    "decimal": Decimal("1.25"),
}
PROPS = {
    "content_type": "application/json",
    "application_headers": HEADERS,
    "delivery_mode": 2,
    "priority": 5,
    "correlation_id": "corr-1",
    "reply_to": "r",
    "expiration": "60000",
    "message_id": "<a-1@mail.example>",
    "timestamp": 1_700_000_000,
    "type": "t",
    "user_id": "guest",
    "app_id": "app",
}


@pytest.mark.parametrize(
    ("size", "frame_max"),
    [
        (0, FRAME_MAX),
        (1, FRAME_MAX),
        (1400, FRAME_MAX),
        (10_000, 4096),
        (3 * FRAME_MAX + 5, FRAME_MAX),
    ],
)
@pytest.mark.parametrize("props", [{}, {"content_type": "application/json"}, PROPS])
def test_the_delivery_py_amqp_reads(size: int, frame_max: int, props: dict[str, Any]) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    data = deliver(body, frame_max=frame_max, **props)
    channel, args, message = py_amqp_reads(data)
    assert ours(data) == (channel, args, message.properties, body)
    if size and size > frame_max:
        assert data.count(b"\xce\x03\x00\x01") >= 2  # the body did come in several frames


names = st.text(max_size=60).filter(lambda s: len(s.encode("utf-8", "surrogatepass")) < 256)


@given(names, st.integers(0, 2**64 - 1), st.booleans(), names, names, st.binary(max_size=300))
def test_any_arguments(
    tag: str, delivery_tag: int, redelivered: bool, ex: str, key: str, body: bytes
) -> None:
    data = deliver(body, (tag, delivery_tag, redelivered, ex, key), channel=3)
    channel, args, message = py_amqp_reads(data)
    assert ours(data) == (channel, args, message.properties, body)


class FakeChannel:
    Message = amqp.Message
    is_closing = False

    def __init__(self) -> None:
        self.callbacks: dict[str, Any] = {}
        self.calls: list[tuple[str, int, bool]] = []

    def basic_ack(self, tag: int, multiple: bool = False) -> None:
        self.calls.append(("ack", tag, multiple))


class FakeTransport:
    def __init__(self, data: bytes) -> None:
        self.buf, self.pos = data, 0

    def unparsed(self) -> tuple[bytes, int]:
        return self.buf, self.pos

    def advance(self, end: int) -> None:
        self.pos = end


def consumer_on(channel: FakeChannel, got: list[Any]) -> DeliveringConsumer:
    consumer = DeliveringConsumer.__new__(DeliveringConsumer)  # no broker: the callback path
    consumer.channel, consumer.accept, consumer.on_message = channel, None, got.append
    channel.callbacks[ARGS[0]] = consumer._receive_callback
    return consumer


def setup(data: bytes) -> tuple[Any, FakeChannel, FakeTransport, list[Any]]:
    channel, got = FakeChannel(), []
    consumer_on(channel, got)
    connection = SimpleNamespace(channels={1: channel}, bytes_recv=0)
    return connection, channel, FakeTransport(data), got


def via_py_amqp(data: bytes, channel: FakeChannel) -> Delivered:
    """The Delivered the consumer's callback makes of py-amqp's message."""
    _, (tag, delivery_tag, redelivered, exchange, key), message = py_amqp_reads(data)
    message.channel = channel
    message.delivery_info = {
        "consumer_tag": tag,
        "delivery_tag": delivery_tag,
        "redelivered": redelivered,
        "exchange": exchange,
        "routing_key": key,
    }
    got: list[Any] = []
    consumer_on(FakeChannel(), got)._receive_callback(message)
    return got[0]  # type: ignore[no-any-return]


SLOTS = ("body", "content_type", "delivery_info", "delivery_tag", "headers", "properties")


@pytest.mark.parametrize("props", [{"content_type": "application/json"}, PROPS])
def test_the_consumer_gets_the_delivered_py_amqp_would_give(props: dict[str, Any]) -> None:
    data = deliver(b'{"a": 1}', **props) + deliver(b"second", **props)
    connection, channel, transport, got = setup(data)
    first = take_delivery(connection, transport)
    assert first == 3 and connection.bytes_recv == 3
    assert take_delivery(connection, transport) == 3 and transport.pos == len(data)
    expected = via_py_amqp(deliver(b'{"a": 1}', **props), channel)
    assert [getattr(got[0], s) for s in SLOTS] == [getattr(expected, s) for s in SLOTS]
    got[0].ack(multiple=True)
    assert channel.calls == [("ack", 42, True)]


def test_an_empty_body() -> None:
    data = deliver(b"", content_type="text/plain")
    connection, channel, transport, got = setup(data)
    assert take_delivery(connection, transport) == 2
    assert got[0].body == b"" and got[0].content_type == "text/plain"
    # py-amqp's body of an empty delivery is "" (str); the loop reads both as b""
    assert to_inbound(got[0]) == to_inbound(via_py_amqp(data, channel))


def frame(frame_type: int, channel: int, payload: bytes) -> bytes:
    return struct.pack(">BHI", frame_type, channel, len(payload)) + payload + b"\xce"


WHOLE = deliver(b"body")
HEARTBEAT = frame(8, 0, b"")


@pytest.mark.parametrize(
    "data",
    [
        WHOLE[:-1],  # not all of it received yet
        WHOLE[:30],
        WHOLE[: WHOLE.index(b"\xce") + 1] + HEARTBEAT + WHOLE[WHOLE.index(b"\xce") + 1 :],
        frame(1, 1, struct.pack(">HHQB", 60, 80, 7, 0)),  # basic.ack
        frame(1, 1, struct.pack(">HH", 20, 40) + b"\x00\x00" * 3),  # channel.close
        HEARTBEAT + WHOLE,
        deliver(b"x", application_headers={"compression": "application/x-gzip"}),
        deliver(b"x", content_encoding="utf-8"),
        deliver(b"x", args=("another-tag", 1, False, "", "k")),
        deliver(b"x", channel=2),
        WHOLE[:-1] + b"\x00",  # a broken frame end: py-amqp raises for it
    ],
)
def test_left_to_py_amqp(data: bytes) -> None:
    connection, _, transport, got = setup(data)
    assert take_delivery(connection, transport) == 0
    assert (transport.pos, got, connection.bytes_recv) == (0, [], 0)


def test_a_closing_channel_or_closed_connection_is_left_to_py_amqp() -> None:
    connection, channel, transport, got = setup(WHOLE)
    channel.is_closing = True
    assert take_delivery(connection, transport) == 0
    connection.channels = None
    assert take_delivery(connection, transport) == 0
    assert got == []
