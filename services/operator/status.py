"""`premium-support status`: the queues of every service and the SLA store, in one report."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from services.operator.config import (
    BrokerUnreachable,
    OperatorSettings,
    management_endpoint,
    safe_amqp_url,
)
from services.operator.dlq_broker import connect
from services.operator.queues import (
    ManagementUnavailable,
    QueueStats,
    management_stats,
    passive_stats,
)
from services.operator.reasons import broker_reason
from services.operator.sla_summary import SlaSummary, summarize
from services.runtime.names import SERVICE_BINDINGS, Names
from services.runtime.publisher import CONNECTION_ERRORS


@dataclass(frozen=True)
class QueueRow:
    name: str  # as in DESIGN.md, without the prefix
    stats: QueueStats
    dead_letters: QueueStats | None  # its `<queue>.dead`; None for support.unrouted

    def to_json(self) -> dict[str, Any]:
        dead = self.dead_letters
        return {
            "name": self.name,
            "queue": self.stats.name,
            "exists": self.stats.exists,
            "ready": self.stats.ready,
            "unacked": self.stats.unacked,
            "consumers": self.stats.consumers,
            "dead_letter_queue": dead.name if dead else None,
            "dead_letters": dead.depth if dead else None,
        }


@dataclass(frozen=True)
class StatusReport:
    broker: str
    prefix: str
    source: str  # management | passive
    source_detail: str  # the API's URL, or why it was not used
    queues: list[QueueRow]
    sla: SlaSummary

    @property
    def unrouted(self) -> int | None:
        return next((row.stats.depth for row in self.queues if row.dead_letters is None), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "broker": self.broker,
            "prefix": self.prefix,
            "source": self.source,
            "source_detail": self.source_detail,
            "queues": [row.to_json() for row in self.queues],
            "unrouted": self.unrouted,
            "sla": self.sla.to_json(),
        }


def queue_stats(settings: OperatorSettings, queues: list[str]) -> tuple[str, str, dict[str, Any]]:
    """(source, detail, stats by queue name): the management API where it answers for
    the broker of AMQP_URL, else passive declares.

    The AMQP connection comes first, always: it proves the broker answers, takes the
    user and the vhost, and names the cluster the management API must belong to. Raises
    BrokerUnreachable (one line: what failed and what to check) when it cannot be made.
    """
    conn = connect(settings)
    try:
        cluster = conn.connection.server_properties.get("cluster_name")
        endpoint = management_endpoint(settings.amqp_url, settings.management_url)
        try:
            timeout = settings.management_timeout_s
            stats = management_stats(endpoint, queues, timeout, cluster)
            return "management", endpoint.base_url, stats
        except ManagementUnavailable as exc:
            why = f"management API at {endpoint.base_url} not used: {exc}"
        try:
            return "passive", why, passive_stats(conn, queues)
        except CONNECTION_ERRORS as exc:
            raise BrokerUnreachable(f"{broker_reason(exc, settings.amqp_url)} ({why})") from exc
    finally:
        conn.release()


def gather(settings: OperatorSettings, now: datetime | None = None) -> StatusReport:
    names = Names(settings.amqp_prefix)
    pairs = [(names.queue(s), names.dead_letter_queue(s)) for s in SERVICE_BINDINGS]
    wanted = [name for pair in pairs for name in pair] + [names.unrouted_queue]
    source, detail, stats = queue_stats(settings, wanted)
    rows = [QueueRow(_bare(names, q), stats[q], stats[dead]) for q, dead in pairs]
    rows.append(QueueRow(_bare(names, names.unrouted_queue), stats[names.unrouted_queue], None))
    return StatusReport(
        broker=safe_amqp_url(settings.amqp_url),
        prefix=settings.amqp_prefix,
        source=source,
        source_detail=detail,
        queues=rows,
        sla=summarize(settings.sla_store_url, now or datetime.now(UTC)),
    )


def _bare(names: Names, queue: str) -> str:
    return queue.removeprefix(names.prefix) if names.prefix else queue
