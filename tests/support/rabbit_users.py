"""The RabbitMQ users of deploy/rabbitmq/definitions.json, imported into the local broker.

The file's vhost, users and permission regexes are imported as they are with
`rabbitmqctl import_definitions`, under names unique to one test run (vhost
`ps-perm-<run>`, users `<user>-<run>`). Each user's `password_hash` is made from a
random password of the run, as `make secrets` makes the hashes compose's RabbitMQ
imports (the committed hashes are never used). `refused` runs one channel method as a
user and returns the broker's 403 reply.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import ParseResult, urlparse

import pika
import pytest
from pika.exceptions import ChannelClosedByBroker

from tests.conftest import ROOT
from tests.support.broker import missing

DEFINITIONS = ROOT / "deploy" / "rabbitmq" / "definitions.json"
ACCESS_REFUSED = 403


def rabbitmqctl(*args: str) -> str:
    done = subprocess.run(
        ["rabbitmqctl", "-q", *args], capture_output=True, text=True, timeout=120, check=False
    )
    if done.returncode != 0:
        raise AssertionError(f"rabbitmqctl {' '.join(args)}: {done.stderr or done.stdout}")
    return done.stdout


def password_hash(password: str) -> str:
    """rabbit_password_hashing_sha256: base64(salt[4] + sha256(salt + password))."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


@dataclass(frozen=True)
class Imported:
    users: dict[str, str]  # name in definitions.json -> name on the broker
    passwords: dict[str, str]  # name in definitions.json -> password
    permissions: dict[str, dict[str, str]]  # name in definitions.json -> its regexes


@dataclass
class Broker:
    """One imported copy of definitions.json on the local broker."""

    host: str
    port: int
    guest: tuple[str, str]
    vhost: str
    users: dict[str, str]  # name in definitions.json -> name on the broker
    passwords: dict[str, str]  # name in definitions.json -> its password in this run
    permissions: dict[str, dict[str, str]]  # name in definitions.json -> its regexes

    def url(self, user: str, vhost: str | None = None) -> str:
        name, password = self.users[user], self.passwords[user]
        return f"amqp://{name}:{password}@{self.host}:{self.port}/{vhost or self.vhost}"

    def guest_url(self) -> str:
        return f"amqp://{self.guest[0]}:{self.guest[1]}@{self.host}:{self.port}/{self.vhost}"

    def channel(self, user: str) -> tuple[pika.BlockingConnection, Any]:
        conn = pika.BlockingConnection(pika.URLParameters(self.url(user)))
        return conn, conn.channel()


def local_broker(amqp_url: str) -> ParseResult:
    parsed = urlparse(amqp_url)
    if shutil.which("rabbitmqctl") is None or parsed.hostname not in ("localhost", "127.0.0.1"):
        missing("needs rabbitmqctl for the broker at AMQP_URL (a local RabbitMQ)")
    return parsed


def import_definitions(run: str, vhost: str) -> Imported:
    """Import definitions.json with the vhost and user names made unique to `run`."""
    definitions = json.loads(DEFINITIONS.read_text())
    (file_vhost,) = (v["name"] for v in definitions["vhosts"])
    renamed = {u["name"]: f"{u['name']}-{run}" for u in definitions["users"]}
    passwords = {name: secrets.token_urlsafe(18) for name in renamed}
    copy = {
        "vhosts": [{"name": vhost}],
        "users": [
            {**u, "name": renamed[u["name"]], "password_hash": password_hash(passwords[u["name"]])}
            for u in definitions["users"]
        ],
        "permissions": [
            {**p, "user": renamed[p["user"]], "vhost": vhost}
            for p in definitions["permissions"]
            if p["vhost"] == file_vhost
        ],
        "topic_permissions": [
            {**p, "user": renamed[p["user"]], "vhost": vhost}
            for p in definitions.get("topic_permissions", [])
            if p["vhost"] == file_vhost
        ],
    }
    # The CLI may run as the `rabbitmq` user (its wrapper su's when called by root), which
    # cannot read pytest's private tmp dirs; stdin ("-") does not pass through that su.
    with tempfile.TemporaryDirectory(prefix="ps-defs-") as tmp:
        path = Path(tmp) / "definitions.json"
        path.write_text(json.dumps(copy))
        os.chmod(tmp, 0o755)
        os.chmod(path, 0o644)
        rabbitmqctl("import_definitions", str(path))
    permissions = {
        p["user"]: {k: p[k] for k in ("configure", "write", "read")}
        for p in definitions["permissions"]
        if p["vhost"] == file_vhost
    }
    return Imported(renamed, passwords, permissions)


def guest_get(broker: Broker, queue: str) -> list[tuple[str, bytes]]:
    """Take every message in `queue`: (the routing key it was published with, body)."""
    conn = pika.BlockingConnection(pika.URLParameters(broker.guest_url()))
    try:
        ch = conn.channel()
        taken = []
        while True:
            method, _, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                return taken
            taken.append((method.routing_key, body))
    finally:
        conn.close()


def guest_purge(broker: Broker, names: list[str]) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(broker.guest_url()))
    try:
        ch = conn.channel()
        for queue in names:
            ch.queue_purge(queue)
    finally:
        conn.close()


def _act(ch: Any, action: str, args: tuple[Any, ...]) -> None:
    if action == "publish":
        exchange, key = args
        ch.basic_publish(exchange, key, b"{}", pika.BasicProperties(delivery_mode=2))
    elif action == "get":
        ch.basic_get(args[0], auto_ack=False)
    elif action == "consume":
        ch.basic_consume(args[0], lambda *_: None)
    elif action == "declare":
        ch.queue_declare(args[0], durable=True, arguments=args[1] if len(args) > 1 else None)
    elif action == "declare_exchange":
        ch.exchange_declare(args[0], "topic", durable=True)
    elif action == "delete":
        ch.queue_delete(args[0])
    elif action == "delete_exchange":
        ch.exchange_delete(args[0])
    elif action == "bind":
        queue, exchange, key = args
        ch.queue_bind(queue, exchange, key)
    elif action == "purge":
        ch.queue_purge(args[0])
    else:
        raise AssertionError(action)


def refused(broker: Broker, user: str, action: str, *args: Any) -> str:
    """Run one channel method as `user` (a publish with confirms on); return the broker's
    403 reply text. Fails the test if the broker let it through."""
    conn, ch = broker.channel(user)
    try:
        if action == "publish":
            ch.confirm_delivery()
        with pytest.raises(ChannelClosedByBroker) as closed:
            _act(ch, action, args)
        assert closed.value.reply_code == ACCESS_REFUSED, closed.value
        return str(closed.value.reply_text)
    finally:
        if conn.is_open:
            conn.close()
