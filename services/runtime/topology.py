"""Declare the topology of DESIGN.md section 3, idempotently; or check it passively.

On RabbitMQ every service queue is a quorum queue with a delivery limit and
at-least-once dead-lettering into `<queue>.dead`; on kombu's in-memory transport the
same names are declared without arguments (it ignores them) and without the stream.
Each `<queue>.dead` is also bound from a direct exchange `<queue>.dlx`, where the
runtime publishes its own dead letters.

`declare` needs configure rights on every name (the `topology` user); `check` is what a
service with passive declares does at start: passive declares need no right at all.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from amqp.exceptions import ChannelError
from kombu import Connection, Exchange, Queue, binding

from services.runtime.config import RuntimeSettings
from services.runtime.names import SERVICE_BINDINGS, STALE_BINDINGS, Names


class TopologyMissing(Exception):
    """What a service needs is not on the broker: `topology declare` has not run there."""


def _quorum_args(settings: RuntimeSettings, dead_letter_queue: str | None) -> dict[str, Any]:
    if settings.is_memory:
        return {}
    args: dict[str, Any] = {"x-queue-type": "quorum"}
    if dead_letter_queue is not None:
        # NOTE: the broker's own dead-lettering goes through the default exchange: it
        # checks no user's rights, and a queue's arguments cannot change once it exists
        # (a redeclare with another x-dead-letter-exchange is refused), so the runtime's
        # `<queue>.dlx` is not used here. Creating the queue needs write on amq.default:
        # the `topology` user has it, the service users do not.
        # NOTE: quorum queues in 3.x have no delivery limit by default: a message that
        # crashes its consumer would be redelivered forever. The broker dead-letters
        # it after `delivery_limit` redeliveries; at-least-once dead-lettering needs
        # reject-publish overflow, else it silently falls back to at-most-once.
        args |= {
            "x-delivery-limit": settings.delivery_limit,
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead_letter_queue,
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }
    return args


def _queue(name: str, args: dict[str, Any], bindings: list[binding] | None = None) -> Queue:
    # NOTE: py-amqp declares auto_delete=True unless told otherwise; quorum queues refuse it.
    return Queue(
        name, bindings=bindings, durable=True, auto_delete=False, queue_arguments=args or None
    )


def exchanges(names: Names, settings: RuntimeSettings) -> dict[str, Exchange]:
    """By name. Bindings reuse these objects: kombu redeclares a binding's exchange, and a
    redeclare with other arguments is refused by the broker."""
    inbound_args = {} if settings.is_memory else {"alternate-exchange": names.unrouted_exchange}
    made = [
        Exchange(names.unrouted_exchange, "fanout", durable=True, auto_delete=False),
        Exchange(
            names.inbound_exchange, "topic", durable=True, auto_delete=False, arguments=inbound_args
        ),
        Exchange(names.events_exchange, "topic", durable=True, auto_delete=False),
        *(
            Exchange(names.dead_letter_exchange(key), "direct", durable=True, auto_delete=False)
            for key in SERVICE_BINDINGS
        ),
    ]
    return {exchange.name: exchange for exchange in made}


def queues(names: Names, settings: RuntimeSettings) -> list[Queue]:
    result: list[Queue] = []
    by_name = exchanges(names, settings)
    for service, (_, exchange, keys) in SERVICE_BINDINGS.items():
        source = by_name[names.exchange(exchange)]
        dead = names.dead_letter_queue(service)
        bindings = [binding(source, routing_key=key) for key in keys]
        result.append(_queue(names.queue(service), _quorum_args(settings, dead), bindings))
        # NOTE: no delivery limit on `.dead` (nor anywhere to dead-letter it): `dlq list`
        # reads by consuming and requeueing, which quorum queues count as redeliveries.
        # On 3.x a quorum queue without the argument has no limit, so reading never
        # drops a dead letter. Adding one now would make every existing `.dead` queue
        # refuse this declare (inequivalent arg). RabbitMQ 4.0-4.2 default to a limit
        # of 20: raise it there with a policy on `\.dead$` (4.3+ does not count nacks).
        dlx = by_name[names.dead_letter_exchange(service)]
        result.append(_queue(dead, _quorum_args(settings, None), [binding(dlx, routing_key=dead)]))
    unrouted = by_name[names.unrouted_exchange]
    result.append(
        _queue(names.unrouted_queue, _quorum_args(settings, None), [binding(unrouted, "")])
    )
    if not settings.is_memory:
        events = by_name[names.events_exchange]
        stream_args = {"x-queue-type": "stream", "x-max-age": settings.event_log_max_age}
        result.append(_queue(names.event_log, stream_args, [binding(events, "#")]))
    return result


def declare(connection: Connection, names: Names, settings: RuntimeSettings) -> list[str]:
    """Declare every exchange, queue and binding; safe to run again. Returns queue names."""
    channel = connection.channel()
    try:
        for exchange in exchanges(names, settings).values():
            exchange(channel).declare()
        declared = []
        for queue in queues(names, settings):
            queue(channel).declare()
            declared.append(queue.name)
        if not settings.is_memory:
            for service, keys in STALE_BINDINGS.items():
                _, exchange, _ = SERVICE_BINDINGS[service]
                for key in keys:
                    # NOTE: unbinding a binding that does not exist is not an error.
                    channel.queue_unbind(names.queue(service), names.exchange(exchange), key)
        return declared
    finally:
        channel.close()


def needs(names: Names, queue_keys: Iterable[str]) -> tuple[list[str], list[str]]:
    """(exchanges, queues) a consume loop on each of `queue_keys` uses: the queue, its
    dead-letter queue and exchange, and support.events, where every service publishes."""
    keys = list(queue_keys)
    wanted_exchanges = [names.events_exchange, *(names.dead_letter_exchange(k) for k in keys)]
    wanted_queues = [q for k in keys for q in (names.queue(k), names.dead_letter_queue(k))]
    return wanted_exchanges, wanted_queues


def check(connection: Connection, names: Names, queue_keys: Iterable[str]) -> None:
    """Passive declares of what `needs` names; TopologyMissing lists what is not there.

    Bindings cannot be checked this way; `topology declare` makes them with the rest."""
    exchanges_needed, queues_needed = needs(names, queue_keys)
    wanted = [("exchange", e) for e in exchanges_needed] + [("queue", q) for q in queues_needed]
    absent: list[str] = []
    channel = connection.channel()
    try:
        for kind, name in wanted:
            try:
                if kind == "exchange":
                    channel.exchange_declare(name, "direct", passive=True)
                else:
                    channel.queue_declare(name, passive=True)
            except ChannelError as exc:  # NotFound on RabbitMQ; on memory:// a "404" too
                if str(exc.reply_code) != "404":
                    raise
                # NOTE: a 404 closes the channel; the next check needs a new one.
                absent.append(f"{kind} {name}")
                channel = connection.channel()
    finally:
        channel.close()
    if absent:
        raise TopologyMissing(
            f"missing on the broker: {', '.join(absent)}; "
            "run `premium-support topology declare` (as a user that may configure) first"
        )
