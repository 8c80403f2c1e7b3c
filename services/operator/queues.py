"""Queue depths and consumers: from the management HTTP API, else from passive declares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
from amqp.exceptions import NotFound
from kombu import Connection

from services.operator.config import ManagementEndpoint

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
    endpoint: ManagementEndpoint, queues: list[str], timeout_s: float, cluster: str | None
) -> dict[str, QueueStats]:
    """Raises ManagementUnavailable unless the API answers as the management API of the
    broker AMQP_URL reached (`cluster`: its cluster_name), with the vhost in it."""
    vhost = quote(endpoint.vhost, safe="")
    auth = (endpoint.username, endpoint.password)
    try:
        with httpx.Client(base_url=endpoint.base_url, auth=auth, timeout=timeout_s) as client:
            overview = client.get("/api/overview")
            if overview.status_code != 200 or "management_version" not in overview.text:
                raise ManagementUnavailable(f"GET /api/overview answered {overview.status_code}")
            theirs = overview.json().get("cluster_name")
            if cluster is not None and theirs != cluster:
                # NOTE: another broker's API (MANAGEMENT_URL, or a port of another node on
                # the host) would show that broker's counts as if they were ours.
                raise ManagementUnavailable(
                    f"it is the API of cluster {theirs!r}, not of {cluster!r} (AMQP_URL's)"
                )
            if client.get(f"/api/vhosts/{vhost}").status_code == 404:
                raise ManagementUnavailable(f"it has no vhost {endpoint.vhost!r}")
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


def passive_stats(conn: Connection, queues: list[str]) -> dict[str, QueueStats]:
    """Ready count and consumers, by passive declares on `conn`."""
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
