"""Basic.Deliver taken straight from the buffered transport's bytes.

py-amqp takes every delivery through three frame callbacks, an `amqp.Message`, a method
dispatch and the consumer's callback: most of the read path's cost. When the buffer
holds a whole delivery (its method, header and body frames back to back) for a
`DeliveringConsumer`, it is parsed here and handed to the consumer's `on_message` as
the `Delivered` py-amqp's path would give (its own property decoder; the tests compare
with py-amqp's parse of the same bytes). Anything else is left in the buffer, untouched,
for py-amqp: other frames (confirms, blocked notices, channel closes, cancels,
heartbeats), a delivery not whole in the buffer yet or with other frames between its
frames, one with a content encoding (py-amqp decodes its body) or a compression header
(kombu decompresses it), a closing channel, a tag without our consumer.
"""

from __future__ import annotations

import struct
from typing import Any

from amqp.serialization import decode_properties_basic

from services.runtime.deliveries import Delivered, DeliveringConsumer

FRAME_END = 0xCE
_METHOD = struct.Struct(">BHIHH")  # frame type, channel, size; class and method id
_FRAME = struct.Struct(">BHI")
_CONTENT = struct.Struct(">HHQ")  # class id, weight, body size
_LONGLONG = struct.Struct(">Q")
_RECEIVE_CALLBACK = DeliveringConsumer._receive_callback
# (channel, end offset, frames, method arguments, property flags and list, body)
Split = tuple[int, int, int, bytes, bytes, bytes]


def _frame_end(buf: bytes, pos: int, frame_type: int, channel: int, least: int) -> int | None:
    """Where the frame of `frame_type` on `channel` at `pos` ends (its frame-end octet),
    when at least `least` bytes of it and all of it are in `buf`."""
    size = len(buf)
    if size - pos < least:
        return None
    kind, on, length = _FRAME.unpack_from(buf, pos)
    end: int = pos + 7 + length
    if kind != frame_type or on != channel or end >= size or buf[end] != FRAME_END:
        return None
    return end


def split_delivery(buf: bytes, pos: int) -> Split | None:
    """The frames of the basic.deliver starting at `pos`, when all are in `buf`."""
    size = len(buf)
    if size - pos < 11:
        return None
    frame_type, channel, length, class_id, method_id = _METHOD.unpack_from(buf, pos)
    end = pos + 7 + length
    if frame_type != 1 or class_id != 60 or method_id != 60 or end >= size:
        return None
    if buf[end] != FRAME_END:
        return None  # py-amqp raises UnexpectedFrame for it
    args, pos = buf[pos + 11 : end], end + 1
    end = _frame_end(buf, pos, 2, channel, 21)  # the content header: class, weight, size
    if end is None:
        return None
    body_size = _CONTENT.unpack_from(buf, pos + 7)[2]
    properties, pos = buf[pos + 19 : end], end + 1
    parts, got = [], 0
    while got < body_size:
        end = _frame_end(buf, pos, 3, channel, 8)
        if end is None:
            return None
        parts.append(buf[pos + 7 : end])
        got, pos = got + end - pos - 7, end + 1
    body = parts[0] if len(parts) == 1 else b"".join(parts)
    return channel, pos, 2 + len(parts), args, properties, body


def deliver_args(args: bytes) -> tuple[str, int, bool, str, str]:
    """basic.deliver's arguments as py-amqp's `loads("sLbss", ...)` reads them."""
    end = 1 + args[0]
    consumer_tag = args[1:end].decode("utf-8", "surrogatepass")
    delivery_tag = _LONGLONG.unpack_from(args, end)[0]
    redelivered = (args[end + 8] & 1) == 1
    pos = end + 10
    end = pos + args[end + 9]
    exchange = args[pos:end].decode("utf-8", "surrogatepass")
    pos = end + 1
    end = pos + args[end]
    routing_key = args[pos:end].decode("utf-8", "surrogatepass")
    return consumer_tag, delivery_tag, redelivered, exchange, routing_key


def take_delivery(connection: Any, transport: Any) -> int:
    """Deliver the delivery at the front of the transport's buffer to its consumer:
    the frames taken, or 0 when it is left to py-amqp."""
    buf, pos = transport.unparsed()
    split = split_delivery(buf, pos)
    channels = connection.channels
    if split is None or channels is None:
        return 0
    channel_id, end, frames, args, raw_properties, body = split
    channel = channels.get(channel_id)
    if channel is None or channel.is_closing:
        return 0
    consumer_tag, delivery_tag, redelivered, exchange, routing_key = deliver_args(args)
    callback = channel.callbacks.get(consumer_tag)
    if getattr(callback, "__func__", None) is not _RECEIVE_CALLBACK:
        return 0
    on_message = callback.__self__.on_message
    properties = decode_properties_basic(raw_properties, 0)[0]
    headers = properties.get("application_headers") or {}
    if on_message is None or "content_encoding" in properties or "compression" in headers:
        return 0
    info = {
        "consumer_tag": consumer_tag,
        "delivery_tag": delivery_tag,
        "redelivered": redelivered,
        "exchange": exchange,
        "routing_key": routing_key,
    }
    # Taken before the callback runs: a callback that raises must not see it again.
    transport.advance(end)
    connection.bytes_recv += frames  # NOTE: the heartbeat check counts frames received
    on_message(Delivered.of(channel, info, properties, headers, body))
    return frames
