"""The frames of one basic.publish, built in a few struct calls.

py-amqp builds them through its general serializer (a format string walked per field,
a BytesIO per table, a property loop over all fourteen basic properties) for every
message. The publisher's messages always have the same shape: content type, string
headers, persistent, message id and maybe a correlation id. For that shape the bytes
are packed here directly; they are the bytes py-amqp writes
(tests/unit/test_runtime_frames.py), and any other shape returns None so the caller
goes the general way.
"""

from __future__ import annotations

import struct
from typing import Any

FRAME_END = b"\xce"
_PUBLISH = struct.pack(">HHH", 60, 40, 0)  # basic.publish, reserved short
_HEADER = struct.Struct(">BHIHHQH")  # frame type, channel, size; class, weight, size, flags
_FRAME = struct.Struct(">BHI")
# basic property flags (AMQP 0-9-1, 4.2.6.1): the ones the publisher sets
_CONTENT_TYPE, _HEADERS, _DELIVERY_MODE = 1 << 15, 1 << 13, 1 << 12
_CORRELATION_ID, _MESSAGE_ID = 1 << 10, 1 << 7
_FRAME_OVERHEAD = 40  # what py-amqp reserves beside a frame's content (method_framing)


def _short(value: str) -> bytes | None:
    raw = value.encode("utf-8", "surrogatepass")
    return bytes((len(raw),)) + raw if len(raw) < 256 else None


# Exchanges, routing keys, content types and header names: a few values, each packed
# once. Message and correlation ids are new each time and are packed as they come.
_PACKED: dict[str, bytes] = {}


def _known(value: str) -> bytes | None:
    packed = _PACKED.get(value)
    if packed is None:
        packed = _short(value)
        if packed is not None and len(_PACKED) < 4096:
            _PACKED[value] = packed
    return packed


def publish_frames(
    channel: int,
    frame_max: int,
    exchange: str,
    routing_key: str,
    mandatory: bool,
    body: bytes,
    content_type: str,
    message_id: str,
    correlation_id: str | None,
    headers: dict[str, Any],
) -> bytes | None:
    """Method, header and body frames of a persistent message, or None when a value is
    of a kind this does not pack (then publish through py-amqp)."""
    if not isinstance(body, bytes):
        return None
    table: list[bytes] = []
    for key, value in headers.items():
        packed_key = _known(key) if isinstance(key, str) else None
        if packed_key is None or type(value) is not str:
            return None
        raw = value.encode("utf-8", "surrogatepass")
        table += (packed_key, b"S", len(raw).to_bytes(4, "big"), raw)
    table_bytes = b"".join(table)
    ex, rk, ctype = _known(exchange), _known(routing_key), _known(content_type)
    mid = _short(message_id)
    cid = _short(correlation_id) if correlation_id else b""
    if ex is None or rk is None or ctype is None or mid is None or cid is None:
        return None
    method = b"".join((_PUBLISH, ex, rk, b"\x01" if mandatory else b"\x00"))
    flags = _CONTENT_TYPE | _HEADERS | _DELIVERY_MODE | _MESSAGE_ID
    if cid:
        flags |= _CORRELATION_ID
    props = b"".join((ctype, len(table_bytes).to_bytes(4, "big"), table_bytes, b"\x02", cid, mid))
    parts = [
        _FRAME.pack(1, channel, len(method)),
        method,
        FRAME_END,
        _HEADER.pack(2, channel, 14 + len(props), 60, 0, len(body), flags),
        props,
        FRAME_END,
    ]
    chunk = frame_max - 8
    if len(method) + len(props) + len(body) + _FRAME_OVERHEAD > chunk:
        # NOTE: py-amqp splits a body at frame_max - 8 once the three frames would not
        # fit one frame_max together; the broker takes either, this keeps the bytes.
        for i in range(0, len(body), chunk):
            part = body[i : i + chunk]
            parts += (_FRAME.pack(3, channel, len(part)), part, FRAME_END)
    elif body:
        parts += (_FRAME.pack(3, channel, len(body)), body, FRAME_END)
    return b"".join(parts)
