"""Reading a py-amqp connection's input without waiting for it.

The consume loop and the publisher read what the broker sent in one place, at a time
of their choosing: `has_input` asks without blocking, `wait_for_input` sleeps on several
connections at once, and `read_available` dispatches what is there (deliveries whose
frames are all buffered through services.runtime.deliver_frames, every other frame
through py-amqp).
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable
from typing import Any

from services.runtime.amqp_transport import BufferedTCPTransport
from services.runtime.deliver_frames import take_delivery


def has_input(connection: Any) -> bool:
    """True when a py-amqp connection has bytes to parse: buffered or on the socket.

    Checking first and then reading in blocking mode avoids py-amqp's per-call
    timeout juggling (two fcntl calls and a raised socket.timeout when idle)."""
    transport = connection.transport
    if transport is None:
        return False
    if isinstance(transport, BufferedTCPTransport):
        return transport.pending() > 0 or transport.receive_nowait()
    return _buffered(transport) or bool(select.select([_open_socket(transport)], [], [], 0)[0])


def _open_socket(transport: Any) -> Any:
    """The transport's socket; a closed one is a lost connection (ConnectionError, which
    the loops reconnect on at once), not a TypeError/ValueError from select()."""
    sock = transport.sock
    if sock is None or sock.fileno() < 0:
        raise ConnectionError("connection closed")
    return sock


def _buffered(transport: Any) -> bool:
    if isinstance(transport, BufferedTCPTransport):
        return transport.pending() > 0
    # py-amqp's own (TLS). NOTE: it reads a frame's exact length from the SSL socket,
    # so the rest of a TLS record (often a whole delivery's header and body) waits
    # decrypted inside the SSL object, where select() on the socket cannot see it.
    pending = getattr(transport.sock, "pending", None)
    return bool(transport._read_buffer) or (pending is not None and pending() > 0)


def wait_for_input(connections: list[Any], timeout: float) -> None:
    """Sleep until one of the connections has input, or `timeout` passes."""
    socks = []
    for connection in connections:
        transport = connection.transport
        if transport is None:
            continue
        if _buffered(transport):
            return
        socks.append(_open_socket(transport))
    if socks:
        select.select(socks, [], [], timeout)
    else:  # nothing to watch: still a sleep, never a busy loop
        time.sleep(timeout)


def read_available(
    connection: Any, limit: int = 10_000, stop: Callable[[], bool] | None = None
) -> int:
    """Dispatch every frame already received (up to `limit`, or until `stop()` says so
    after a frame); never waits for more.

    NOTE: a frame whose first bytes arrived is read to its end; the rest follows in
    microseconds on a live connection, and a dead one raises."""
    frames = 0
    transport = connection.transport
    on_frame = connection.on_inbound_frame
    buffered = isinstance(transport, BufferedTCPTransport)
    # connection.blocking_read(None) without its per-frame context manager, which for a
    # timeout of None changes nothing; a frame that closes the connection ends the loop.
    while frames < limit and connection.transport is transport and has_input(connection):
        taken = take_delivery(connection, transport) if buffered else 0
        if taken:
            frames += taken
        else:
            on_frame(transport.read_frame())
            frames += 1
        if stop is not None and stop():
            break
    return frames


def read_while_arriving(
    connection: Any, done: Callable[[], bool], quiet_s: float, limit_s: float
) -> None:
    """Read frames as the broker sends them until `done()`, a pause of `quiet_s` in
    the stream, or `limit_s` in all: for a window the broker is still pushing."""
    deadline = time.monotonic() + limit_s
    while not done():
        if read_available(connection, stop=done):
            continue
        left = deadline - time.monotonic()
        if left <= 0:
            return
        wait_for_input([connection], min(quiet_s, left))
        if not has_input(connection):
            return
