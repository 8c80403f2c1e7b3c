"""Declare the topology of DESIGN.md section 3, idempotently.

On RabbitMQ every service queue is a quorum queue with a delivery limit and
at-least-once dead-lettering into `<queue>.dead`; on kombu's in-memory transport the
same names are declared without arguments (it ignores them) and without the stream.
"""

from __future__ import annotations

from typing import Any

from kombu import Connection, Exchange, Queue, binding

from services.runtime.config import RuntimeSettings
from services.runtime.names import SERVICE_BINDINGS, STALE_BINDINGS, Names


def _quorum_args(settings: RuntimeSettings, dead_letter_queue: str | None) -> dict[str, Any]:
    if settings.is_memory:
        return {}
    args: dict[str, Any] = {"x-queue-type": "quorum"}
    if dead_letter_queue is not None:
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
        result.append(_queue(dead, _quorum_args(settings, None)))
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
