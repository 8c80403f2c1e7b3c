"""Reading, replaying and purging a dead-letter queue on the broker, without losing any.

Dead letters are read by consuming with manual acks and held unacked; what was not
replayed goes back with one basic.nack(requeue) at the end. A replayed letter is acked
only after the broker confirmed its republish.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import structlog
from amqp import spec
from amqp.exceptions import NotFound
from kombu import Connection, Consumer, Queue

from services.operator.config import BrokerUnreachable, OperatorError, safe_amqp_url
from services.operator.dlq import DeadLetter, from_delivery, replay_message
from services.operator.reasons import broker_reason
from services.runtime.app import connection_factory
from services.runtime.config import RuntimeSettings
from services.runtime.errors import ConnectionLost
from services.runtime.names import Names
from services.runtime.publisher import CONNECTION_ERRORS, ConfirmedPublisher

log = structlog.get_logger("operator.dlq")
MAX_PREFETCH = 65535  # AMQP's prefetch count is a short
IDLE_S = 1.0  # nothing delivered for this long: the rest is held by someone else
REQUEUE_WAIT_S = 2.0
REPLAY_ERRORS: tuple[type[BaseException], ...] = (ConnectionLost, *CONNECTION_ERRORS)


def connect(settings: RuntimeSettings) -> Connection:
    """One connection to AMQP_URL, tried once; BrokerUnreachable (one line) if not."""
    try:
        conn = Connection(settings.amqp_url, heartbeat=0, connect_timeout=5)
        _ = conn.transport  # kombu resolves the scheme lazily: an unknown one fails here
    except (ValueError, KeyError) as exc:  # a port that is no number, an unknown scheme
        raise OperatorError(
            f"AMQP_URL {safe_amqp_url(settings.amqp_url)} is not a broker URL ({exc}): "
            "write amqp://user:password@host:5672/vhost"
        ) from None
    try:
        conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2)
    except CONNECTION_ERRORS as exc:
        conn.release()
        raise BrokerUnreachable(broker_reason(exc, settings.amqp_url)) from exc
    return conn


class DeadLetterSession:
    """One channel on one dead-letter queue; what it read stays unacked until settled."""

    def __init__(self, settings: RuntimeSettings, queue: str) -> None:
        self.settings = settings
        self.queue = queue
        self._conn: Connection | None = None
        self._channel: Any = None
        self._held: dict[int, Any] = {}  # id(DeadLetter) -> kombu Message
        self._acked = False

    def __enter__(self) -> DeadLetterSession:
        self._conn = connect(self.settings)
        self._channel = self._conn.channel()
        return self

    def __exit__(self, *exc: type[BaseException] | BaseException | TracebackType | None) -> None:
        try:
            self.release()
        except CONNECTION_ERRORS as error:  # the channel close requeues them anyway
            log.warning("dlq.release_failed", queue=self.queue, error=str(error))
        if self._conn is not None:
            self._conn.release()

    def depth(self) -> int:
        """Ready messages (those another reader holds unacked are not counted)."""
        try:
            _, ready, _ = self._channel.queue_declare(queue=self.queue, passive=True)
        except NotFound:
            raise OperatorError(
                f"queue {self.queue} does not exist (run `premium-support topology declare`)"
            ) from None
        return int(ready)

    def read(self, limit: int) -> list[DeadLetter]:
        want = min(self.depth(), limit, MAX_PREFETCH)
        if want == 0:
            return []
        messages: list[Any] = []
        # NOTE: quorum queues refuse global QoS; per consumer, the prefetch bounds what
        # the broker hands us to exactly what we mean to read.
        self._channel.basic_qos(0, want, False)
        consumer = Consumer(
            self._channel,
            queues=[Queue(self.queue, no_declare=True)],
            on_message=messages.append,
            no_ack=False,
            auto_declare=False,
        )
        consumer.consume()
        assert self._conn is not None
        while len(messages) < want:
            try:
                self._conn.drain_events(timeout=IDLE_S)
            except TimeoutError:  # socket.timeout is TimeoutError
                break
        consumer.cancel()  # held deliveries stay valid on the channel after a cancel
        letters = []
        for message in messages:
            letter = from_delivery(
                message.properties,
                message.headers or {},
                message.body if isinstance(message.body, bytes) else str(message.body).encode(),
                bool(message.delivery_info.get("redelivered")),
            )
            self._held[id(letter)] = message
            letters.append(letter)
        return letters

    def _wait_ready(self, count: int, timeout_s: float = REQUEUE_WAIT_S) -> None:
        # NOTE: a quorum queue applies a requeue through its log: for a moment after the
        # nack the letters are neither held nor ready, and the next `dlq list` run right
        # after this one would miss them. Wait (bounded) until they are ready again.
        deadline = time.monotonic() + timeout_s
        while self.depth() < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def ack(self, letter: DeadLetter) -> None:
        self._held.pop(id(letter)).ack()
        self._acked = True

    def release(self) -> None:
        """Give back every letter still held, then make sure the acks took."""
        if self._held:
            top = max(message.delivery_tag for message in self._held.values())
            # NOTE: py-amqp has no basic_nack. A nack (unlike basic.reject) is not
            # counted as a failed delivery by RabbitMQ >= 4.3 quorum queues, so reading
            # never brings a dead letter closer to a delivery limit there.
            self._channel.send_method(spec.Basic.Nack, "Lbb", (top, True, True))
            given_back = len(self._held)
            self._held.clear()
            self._wait_ready(given_back)
        if self._acked:
            # NOTE: a quorum queue can ignore acks that arrive just before their channel
            # closes (rabbitmq-server#10327); a synchronous round trip and a short pause
            # keep a replayed letter from coming back (as the consume loop does).
            self._channel.queue_declare(queue=self.queue, passive=True)
            time.sleep(self.settings.ack_settle_s)
            self._acked = False

    def purge(self) -> int:
        return int(self._channel.queue_purge(queue=self.queue) or 0)


@dataclass
class ReplayResult:
    replayed: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (id, why)


def replay(session: DeadLetterSession, letters: list[DeadLetter]) -> ReplayResult:
    """Republish with confirms; ack each letter whose republish was confirmed."""
    result = ReplayResult()
    settings = session.settings
    publisher = ConfirmedPublisher(
        connection_factory(settings, name="operator dlq"),
        Names(""),  # x-original-exchange already carries the prefix
        settings.confirm_timeout_s,
        settings.blocked_timeout_s,
    )
    try:
        publisher.open()
        sent: list[tuple[DeadLetter, int]] = []
        for letter in letters:
            try:
                sent.append((letter, publisher.publish(replay_message(letter))))
            except ValueError as exc:
                result.failed.append((letter.id, str(exc)))
        publisher.wait([seq for _, seq in sent], time.monotonic() + settings.confirm_timeout_s)
        publisher.expire([seq for _, seq in sent if not publisher.is_done(seq)])
        for letter, seq in sent:
            error = publisher.take(seq)
            if error is None:
                session.ack(letter)
                result.replayed.append(letter.id)
                log.info("dlq.replayed", queue=session.queue, id=letter.id, reason=letter.reason)
            else:
                result.failed.append((letter.id, str(error)))
    except REPLAY_ERRORS as exc:
        # Nothing unconfirmed was acked: every letter not replayed stays in the queue.
        raise BrokerUnreachable(f"replay interrupted: {exc}") from exc
    finally:
        publisher.close()
    return result
