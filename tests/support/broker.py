"""The broker for tests: AMQP_URL, else a testcontainers RabbitMQ where Docker answers."""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import NoReturn
from urllib.parse import urlparse

import pika
import pytest

from services.runtime.names import SERVICE_BINDINGS, Names
from services.upstream import pika_parameters

HOW_TO = (
    "Integration tests need RabbitMQ. Set AMQP_URL (for example "
    "AMQP_URL=amqp://guest:guest@127.0.0.1:5672//), start one with "
    "`rabbitmq-server -detached`, or run Docker so testcontainers can start one."
)


def _reachable(url: str) -> bool:
    parsed = urlparse(url)
    try:
        with socket.create_connection((parsed.hostname or "localhost", parsed.port or 5672), 2):
            return True
    except OSError:
        return False


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:  # any failure means: no usable Docker here
        return False


@contextmanager
def broker_url() -> Iterator[str]:
    url = os.environ.get("AMQP_URL")
    if url:
        if not _reachable(url):
            pytest.fail(f"AMQP_URL={url} does not answer. {HOW_TO}")
        yield url
        return
    if not _docker_answers():
        pytest.fail(f"AMQP_URL is not set and Docker does not answer. {HOW_TO}")
    from testcontainers.rabbitmq import RabbitMqContainer

    with RabbitMqContainer("rabbitmq:3.10-management") as container:
        host, port = container.get_container_host_ip(), container.get_exposed_port(5672)
        yield f"amqp://guest:guest@{host}:{port}//"


def new_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}."


def delete_topology(url: str, prefix: str, extra_queues: list[str]) -> None:
    names = Names(prefix)
    queues = [
        *names.service_queues(),
        *(names.dead_letter_queue(s) for s in SERVICE_BINDINGS),
        names.unrouted_queue,
        names.event_log,
        *extra_queues,
    ]
    conn = pika.BlockingConnection(pika_parameters(url))
    try:
        ch = conn.channel()
        for queue in queues:
            ch.queue_delete(queue)
        exchanges = [names.inbound_exchange, names.events_exchange, names.unrouted_exchange]
        for exchange in [*exchanges, *(names.dead_letter_exchange(s) for s in SERVICE_BINDINGS)]:
            ch.exchange_delete(exchange)
    finally:
        conn.close()


def close_connection(name: str, reason: str) -> int:
    """Force-close the broker connections the runtime named `name` (client property
    connection_name, e.g. `<prefix>intake`): this test's, never anyone else's. One at
    a time, since each rabbitmqctl call takes a second or two."""
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "pid", "client_properties", "-q", "--no-table-headers"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    pids = [
        line.split("\t", 1)[0]
        for line in listing.splitlines()
        if f'{{"connection_name","{name}"}}' in line
    ]
    for pid in pids:
        subprocess.run(
            ["rabbitmqctl", "close_connection", pid, reason], check=True, capture_output=True
        )
    return len(pids)


def missing(reason: str) -> NoReturn:
    """A piece of the environment a test needs is absent: skip on a developer's
    machine, fail in CI (CI=true), which must have everything and so never hides a test."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI must provide it)")
    pytest.skip(reason)
