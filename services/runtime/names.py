"""Every exchange, queue and binding name, made in this one module.

`AMQP_PREFIX` is prepended to every exchange and queue name as it is, so tests and
parallel deployments on one broker never collide (DESIGN.md section 3).
"""

from __future__ import annotations

from dataclasses import dataclass

INBOUND_ROUTING_KEYS = ("inbound.chat", "inbound.email", "inbound.phone", "inbound.helpdesk")

# service -> (its queue, the exchange it reads, the routing keys it binds)
SERVICE_BINDINGS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "intake": ("intake.inbound", "support.inbound", INBOUND_ROUTING_KEYS),
    "sla_timer": ("sla_timer.events", "support.events", ("ticket.#",)),
    # NOTE: the notifier reads two queues. Page-worthy events (a business-critical ticket
    # opened, any warning or breach, an acknowledgement) have a queue and consume loop
    # of their own, so a backlog of bulk events (every ticket's opened and scheduled)
    # never delays a page. It takes standard ticket.opened too (DESIGN names
    # business-critical ones): a team notice about a standard ticket's missed target
    # must name its account and subject.
    "notifier_urgent": (
        "notifier.urgent",
        "support.events",
        (
            "ticket.opened.business_critical",
            "sla.warning.*",
            "sla.breached.*",
            "escalation.acknowledged",
        ),
    ),
    "notifier": (
        "notifier.events",
        "support.events",
        ("ticket.opened.standard", "ticket.resolved", "sla.scheduled.*", "sla.met.*"),
    ),
}
SERVICES = ("intake", "sla_timer", "notifier")


def owner(queue_key: str) -> str:
    """The service that reads a queue of SERVICE_BINDINGS (`notifier_urgent` -> `notifier`)."""
    return next(s for s in SERVICES if queue_key == s or queue_key.startswith(s + "_"))


def queues_of(service: str) -> tuple[str, ...]:
    """The SERVICE_BINDINGS keys of the queues `service` reads, in declaration order."""
    return tuple(key for key in SERVICE_BINDINGS if owner(key) == service)


# Bindings of earlier versions that `topology declare` removes: with them the bulk queue
# would also take every page-worthy event.
STALE_BINDINGS: dict[str, tuple[str, ...]] = {
    "notifier": ("ticket.opened.*", "sla.#", "escalation.acknowledged"),
}


def dead_letter_exchange(queue_key: str) -> str:
    """The unprefixed name (as `Outgoing.exchange` takes it) of the direct exchange that
    routes to the dead-letter queue of `queue_key`: `intake.inbound` -> `intake.inbound.dlx`.

    The runtime publishes its dead letters there, not through the default exchange, so a
    service user's write right covers its own dead-letter queues and nothing else."""
    return f"{SERVICE_BINDINGS[queue_key][0]}.dlx"


DEAD_LETTER_EXCHANGES = frozenset(dead_letter_exchange(key) for key in SERVICE_BINDINGS)


def dead_letter_exchange_by_queue(dead_letter_queue: str) -> str:
    """The unprefixed `.dlx` that routes to `dead_letter_queue` (a full, maybe prefixed,
    name), or "" if it names no dead-letter queue. For dead letters written (to an
    outbox) before `.dlx` existed, which named their queue for the default exchange."""
    for key, (queue, _, _) in SERVICE_BINDINGS.items():
        if dead_letter_queue.endswith(f"{queue}.dead"):
            return dead_letter_exchange(key)
    return ""


@dataclass(frozen=True)
class Names:
    prefix: str = ""

    def _p(self, name: str) -> str:
        return f"{self.prefix}{name}"

    @property
    def inbound_exchange(self) -> str:
        return self._p("support.inbound")

    @property
    def events_exchange(self) -> str:
        return self._p("support.events")

    @property
    def unrouted_exchange(self) -> str:
        """Alternate exchange of support.inbound: catches what no queue would take."""
        return self._p("support.inbound.unrouted")

    @property
    def unrouted_queue(self) -> str:
        return self._p("support.unrouted")

    @property
    def event_log(self) -> str:
        return self._p("support.events.log")

    def exchange(self, unprefixed: str) -> str:
        return self._p(unprefixed)

    def queue(self, service: str) -> str:
        return self._p(SERVICE_BINDINGS[service][0])

    def dead_letter_queue(self, service: str) -> str:
        return f"{self.queue(service)}.dead"

    def dead_letter_exchange(self, service: str) -> str:
        return self._p(dead_letter_exchange(service))

    def service_queues(self) -> list[str]:
        return [self.queue(s) for s in SERVICE_BINDINGS]
