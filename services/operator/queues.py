"""Queue depths and consumers: from the management HTTP API, else from passive declares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from amqp.exceptions import NotFound

from services.operator.config import ManagementEndpoint
from services.operator.dlq_broker import connect
from services.runtime.config import RuntimeSettings

STATS_COLUMNS = "name,messages,messages_ready,messages_unacknowledged,consumers"


@dataclass(frozen=True)
class QueueStats:
    name: str
    exists: bool
    ready: int | None = None
    unacked: int | None = None  # None: the source cannot tell (passive declare)
    consumers: int | None = None

    @property
    def depth(self) -> int | None:
        """Every message in the queue, as far as the source can tell."""
        if self.ready is None:
            return None
        return self.ready + (self.unacked or 0)


class ManagementUnavailable(Exception):
    pass


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) else None


def management_stats(
    endpoint: ManagementEndpoint, queues: list[str], timeout_s: float
) -> dict[str, QueueStats]:
    """Raises ManagementUnavailable unless the API answers as a RabbitMQ management API."""
    vhost = quote(endpoint.vhost, safe="")
    auth = (endpoint.username, endpoint.password)
    try:
        with httpx.Client(base_url=endpoint.base_url, auth=auth, timeout=timeout_s) as client:
            overview = client.get("/api/overview")
            if overview.status_code != 200 or "management_version" not in overview.text:
                raise ManagementUnavailable(f"GET /api/overview answered {overview.status_code}")
            stats = {}
            for name in queues:
                path = f"/api/queues/{vhost}/{quote(name, safe='')}"
                response = client.get(path, params={"columns": STATS_COLUMNS})
                if response.status_code == 404:
                    stats[name] = QueueStats(name, exists=False)
                    continue
                if response.status_code != 200:
                    raise ManagementUnavailable(f"GET {path} answered {response.status_code}")
                stats[name] = _from_api(name, response.json())
            return stats
    except (httpx.HTTPError, ValueError) as exc:  # ValueError: a body that is not JSON
        raise ManagementUnavailable(f"{type(exc).__name__}: {exc}") from exc


def _from_api(name: str, data: dict[str, Any]) -> QueueStats:
    # NOTE: the management API reports counts sampled by the broker (every 5 s by
    # default), and a queue declared a moment ago may have none yet: 0 then.
    return QueueStats(
        name,
        exists=True,
        ready=_int(data.get("messages_ready")) or 0,
        unacked=_int(data.get("messages_unacknowledged")) or 0,
        consumers=_int(data.get("consumers")) or 0,
    )


def passive_stats(settings: RuntimeSettings, queues: list[str]) -> dict[str, QueueStats]:
    """Ready count and consumers; raises BrokerUnreachable when AMQP does not answer."""
    conn = connect(settings)
    try:
        stats = {}
        channel = conn.channel()
        for name in queues:
            try:
                _, ready, consumers = channel.queue_declare(queue=name, passive=True)
            except NotFound:
                # NOTE: a failed passive declare closes the channel; take a new one.
                stats[name] = QueueStats(name, exists=False)
                channel = conn.channel()
                continue
            stats[name] = QueueStats(name, True, ready=int(ready), consumers=int(consumers))
        return stats
    finally:
        conn.release()
