"""A confirmed publisher on a connection of its own, with pipelined confirms.

`publish` writes and returns at once; confirms are read as they arrive (`pump`) and
the caller acks each input once its outputs are confirmed. No publish ever waits for
its own round trip, which is what takes a Python worker from ~1,000 to >10,000 msg/s.
On kombu's in-memory transport there are no confirms: a publish is done when written.
The confirm bookkeeping is services.runtime.confirms; the two ways a publish is written
(frames packed by amqp_frames, or through py-amqp) are services.runtime.publish_paths.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import structlog
from kombu import Connection

from services.runtime.amqp_input import has_input, read_available, wait_for_input
from services.runtime.amqp_transport import BufferedTCPTransport
from services.runtime.confirms import ConfirmLedger
from services.runtime.errors import ConnectionLost
from services.runtime.messages import Outgoing
from services.runtime.names import Names
from services.runtime.publish_paths import packed_frames, publish_general

log = structlog.get_logger("runtime.publisher")

# Errors by which py-amqp / kombu / the socket say "this connection is gone".
try:  # pragma: no cover - import shape differs between versions
    from amqp.exceptions import ChannelError as _AmqpChannelError
    from amqp.exceptions import ConnectionError as _AmqpConnectionError
    from amqp.exceptions import RecoverableConnectionError as _AmqpRecoverable
    from kombu.exceptions import OperationalError as _KombuOperational

    CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
        _AmqpConnectionError,
        _AmqpChannelError,
        _AmqpRecoverable,
        _KombuOperational,
        ConnectionError,
        OSError,
    )
except ImportError:  # pragma: no cover
    CONNECTION_ERRORS = (ConnectionError, OSError)


class ConfirmedPublisher(ConfirmLedger):
    def __init__(
        self,
        connect: Callable[[], Connection],
        names: Names,
        confirm_timeout_s: float,
        blocked_timeout_s: float,
    ) -> None:
        self._connect = connect
        self._names = names
        self._confirm_timeout_s = confirm_timeout_s
        self._blocked_timeout_s = blocked_timeout_s
        self._conn: Connection | None = None
        self._channel: Any = None
        self._confirms = False
        self._reset()
        self.blocked_since: float | None = None

    # -- connection -------------------------------------------------------------
    def open(self) -> None:
        self.close()
        self.blocked_since = None
        try:
            self._conn = self._connect()
            self._conn.ensure_connection(max_retries=1)
            self._channel = self._conn.channel()
            self._confirms = self._conn.transport.driver_type == "amqp"
            self._reset()
            if self._confirms:
                self._channel.confirm_select()
                self._channel.events["basic_ack"].add(self._on_ack)
                self._channel.events["basic_nack"].add(self._on_nack)
                self._channel.events["basic_return"].add(self._on_return)
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"publisher cannot connect: {exc}") from exc

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(*CONNECTION_ERRORS):  # already gone
                self._conn.release()
        self._conn, self._channel = None, None

    def on_blocked(self, reason: str) -> None:
        self.blocked_since = time.monotonic()
        log.warning("broker.blocked", reason=reason)

    def on_unblocked(self) -> None:
        self.blocked_since = None
        log.info("broker.unblocked")

    # -- publishing -------------------------------------------------------------
    def publish(self, out: Outgoing) -> int:
        """Write one message without waiting; returns its sequence number."""
        if self._channel is None:
            raise ConnectionLost("publisher is not connected")
        exchange = self._names.exchange(out.exchange) if out.exchange else ""
        seq = self._next_seq
        headers = out.headers
        if out.mandatory and self._confirms:
            # A returned message is matched to its publish by this, not by message id
            # (which may be empty or shared, e.g. two dead letters of one input).
            token = f"{id(self)}-{seq}"
            headers = {**headers, "x-publish-token": token}
        try:
            frames = (
                packed_frames(self._channel, out, exchange, headers) if self._confirms else None
            )
            if frames is not None:
                connection = self._channel.connection
                connection.transport.write(frames)
                connection.bytes_sent += 1  # as py-amqp's frame writer counts for heartbeats
            else:
                publish_general(self._channel, out, exchange, headers)
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"publish failed: {exc}") from exc
        self._next_seq += 1
        if not self._confirms:
            self._results[seq] = None  # in-memory: done when written
        else:
            self._unconfirmed[seq] = None
            if out.mandatory:
                self._seq_by_id[token] = seq
                self._id_by_seq[seq] = token
        return seq

    def wait(self, seqs: list[int], deadline: float) -> None:
        """Block until these publishes are confirmed, nacked or `deadline` passes.

        A blocked broker (memory or disk alarm) gets `blocked_timeout_s`, no longer.
        """
        while not all(seq in self._results for seq in seqs):
            remaining = deadline - time.monotonic()
            if self.blocked_since is not None:
                remaining = self.blocked_since + self._blocked_timeout_s - time.monotonic()
            if remaining <= 0:
                return
            self.pump(min(remaining, 0.5))

    def pump(self, timeout: float = 0) -> None:
        """Read what the broker sent (confirms, returns, blocked notices) for up to
        `timeout` seconds. Raises ConnectionLost if the connection is gone."""
        if self._conn is None or not self._confirms:
            return
        raw = self._conn.connection
        try:
            if timeout > 0 and not has_input(raw):
                wait_for_input([raw], timeout)
            read_available(raw)
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"publisher connection lost: {exc}") from exc

    @contextlib.contextmanager
    def corked(self) -> Iterator[None]:
        """Publishes inside go out in one write at the end (or as they come, in-memory)."""
        raw = self._conn.connection if self._conn is not None and self._confirms else None
        transport = getattr(raw, "transport", None)
        if not isinstance(transport, BufferedTCPTransport):
            yield
            return
        transport.cork()
        try:
            yield
        finally:
            try:
                transport.uncork()
            except CONNECTION_ERRORS as exc:
                raise ConnectionLost(f"publisher connection lost: {exc}") from exc

    def input_connections(self) -> list[Any]:
        """The py-amqp connection whose input means confirms to read, for a shared wait."""
        return [self._conn.connection] if self._conn is not None and self._confirms else []

    def heartbeat(self) -> None:
        if self._conn is None or not self._confirms:
            return
        self.pump(0)
        try:
            self._conn.heartbeat_check()
        except CONNECTION_ERRORS as exc:
            raise ConnectionLost(f"publisher heartbeat failed: {exc}") from exc
