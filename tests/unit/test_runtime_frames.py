"""publish_frames packs the bytes py-amqp writes for the same publish, or declines."""

from __future__ import annotations

from typing import Any

import amqp
import pytest
from amqp import spec
from amqp.method_framing import frame_writer
from amqp.serialization import dumps
from hypothesis import given
from hypothesis import strategies as st

from services.runtime.amqp_frames import publish_frames

FRAME_MAX = 131072


class _Capture:
    def __init__(self) -> None:
        self.frame_max, self.bytes_sent = FRAME_MAX, 0
        self.data = b""

    def write(self, data: Any) -> None:
        self.data += bytes(data)


def py_amqp(
    channel: int, exchange: str, key: str, mandatory: bool, body: bytes, **props: Any
) -> bytes:
    """What PipelinedChannel.basic_publish writes for kombu's prepare_message."""
    capture = _Capture()
    message = amqp.Message(
        body,
        priority=None,
        content_type=props["content_type"],
        content_encoding=None,
        application_headers=props["headers"],
        delivery_mode=2,
        message_id=props["message_id"],
        **({"correlation_id": props["correlation_id"]} if props["correlation_id"] else {}),
    )
    args = dumps("Bssbb", (0, exchange, key, mandatory, False))
    frame_writer(capture, capture)(1, channel, spec.Basic.Publish, args, message)
    return capture.data


def ours(
    channel: int, exchange: str, key: str, mandatory: bool, body: bytes, **props: Any
) -> bytes | None:
    return publish_frames(
        channel,
        FRAME_MAX,
        exchange,
        key,
        mandatory,
        body,
        props["content_type"],
        props["message_id"],
        props["correlation_id"],
        props["headers"],
    )


EVENT = {
    "content_type": "application/cloudevents+json",
    "message_id": "1aa98bf6-8724-5d3b-860c-2bd90e7d9d33",
    "correlation_id": "bench-12",
    "headers": {"ce-type": "support.ticket.opened", "ce-subject": "T-chat-0123456789abcdef"},
}


@pytest.mark.parametrize("size", [0, 1, 1400, FRAME_MAX - 300, FRAME_MAX, 3 * FRAME_MAX + 5])
@pytest.mark.parametrize("mandatory", [False, True])
def test_the_bytes_py_amqp_writes(size: int, mandatory: bool) -> None:
    body = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
    args = (1, "t1.support.events", "ticket.opened.standard", mandatory, body)
    assert ours(*args, **EVENT) == py_amqp(*args, **EVENT)


def test_without_correlation_id_or_headers() -> None:
    props = EVENT | {"correlation_id": None, "headers": {}}
    args = (7, "", "q", False, b"{}")
    assert ours(*args, **props) == py_amqp(*args, **props)


strings = st.text(max_size=80)


@given(strings, strings, strings, st.dictionaries(strings, strings, max_size=4))
def test_any_strings(
    key: str, message_id: str, correlation_id: str, headers: dict[str, str]
) -> None:
    props = {"content_type": "x/y", "message_id": message_id, "correlation_id": correlation_id}
    props["headers"] = headers
    args = (2, "ex", key, True, b"body")
    try:
        expected = py_amqp(*args, **props)
    except Exception:  # e.g. a string over 255 bytes: py-amqp refuses it
        return
    assert ours(*args, **props) == expected


@pytest.mark.parametrize(
    "change",
    [
        {"headers": {"x-death": [{"count": 1}]}},
        {"headers": {"attempts": 3}},
        {"message_id": "m" * 300},
        {"correlation_id": "é" * 200},
    ],
)
def test_other_shapes_go_the_general_way(change: dict[str, Any]) -> None:
    assert ours(1, "ex", "k", False, b"b", **(EVENT | change)) is None


def test_names_packed_once_give_the_same_bytes_again() -> None:
    # exchanges, routing keys, content types and header names are packed once and kept
    args = (1, "t1.support.events", "ticket.opened.standard", False, b"{}")
    first = ours(*args, **EVENT)
    assert first == ours(*args, **EVENT) == py_amqp(*args, **EVENT)
    other = EVENT | {"message_id": "another", "headers": {"ce-type": "x", "ce-subject": "y"}}
    assert ours(*args, **other) == py_amqp(*args, **other)
