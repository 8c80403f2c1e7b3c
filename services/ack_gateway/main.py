"""The ack gateway's wiring: settings and secrets -> store, publisher, HTTP server."""

from __future__ import annotations

import signal
import threading
from typing import Any

import structlog
from pydantic import Field

from services.ack_gateway.gateway import Gateway
from services.ack_gateway.http import AckServer
from services.ack_gateway.store import UsedIds
from services.common.ack_token import SHORTEST_SECRET
from services.common.store_engine import engine_for
from services.runtime.config import RuntimeSettings
from services.runtime.secrets import read_secret
from services.runtime.yaml_files import ConfigFileError
from services.upstream import UpstreamPublisher

log = structlog.get_logger("ack_gateway")


class AckGatewaySettings(RuntimeSettings):
    ack_host: str = Field("127.0.0.1", alias="ACK_HOST")
    ack_port: int = Field(8470, alias="ACK_PORT", ge=0, le=65535)
    ack_store_url: str = Field("ack_gateway.db", alias="ACK_STORE_URL", repr=False)
    ack_threads: int = Field(8, alias="ACK_THREADS", ge=1, le=256)


def ack_secret(environ: Any = None) -> str:
    """ACK_SECRET (or ACK_SECRET_FILE), which the notifier signs links with; required."""
    secret = read_secret("ACK_SECRET", environ)
    if secret is None or len(secret) < SHORTEST_SECRET:
        raise ConfigFileError(
            "ACK_SECRET", [(None, f"set it (at least {SHORTEST_SECRET} characters)")]
        )
    return secret


def publisher(settings: RuntimeSettings) -> Any:
    """Publish one update with confirms. A connection per acknowledgement: they are rare,
    and a kept BlockingConnection would miss its heartbeats while the server idles."""

    def publish(body: bytes, message_id: str) -> None:
        with UpstreamPublisher(settings.amqp_url, settings.amqp_prefix) as upstream:
            upstream.publish("helpdesk", body, message_id=message_id)

    return publish


def build(settings: AckGatewaySettings) -> AckServer:
    used = UsedIds(engine_for(settings.ack_store_url, default="ack_gateway.db"))
    used.migrate()
    pd_secret = read_secret("PAGERDUTY_WEBHOOK_SECRET")
    gateway = Gateway(ack_secret(), used, publisher(settings), pd_secret)
    address = (settings.ack_host, settings.ack_port)
    try:
        return AckServer(address, gateway, settings.ack_threads)
    except OSError as exc:  # a taken port, an address not of this host
        problem = f"cannot listen on {address[0]}:{address[1]}: {exc.strerror or exc}"
        raise ConfigFileError("ACK_PORT", [(None, problem)]) from None


def serve(server: AckServer) -> None:
    """Serve until SIGTERM or SIGINT."""

    def stop(*_: object) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    log.info("ack_gateway.serving", host=host, port=port)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
        log.info("ack_gateway.stopped")
