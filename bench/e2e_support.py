"""Helpers of bench/e2e_latency.py: the files, stores and processes of one run, the paging
endpoint, queue depths, CPU counters and the clean-up. Everything talks to 127.0.0.1 only."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pika
import pika.exceptions

from bench.e2e_load import USERS
from services.upstream import pika_parameters

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
LOCAL_HOSTS = ("127.0.0.1", "localhost")
CLK_TCK = os.sysconf("SC_CLK_TCK")

# -- files of a run -----------------------------------------------------------------------
ACCOUNTS = """accounts:
  - portal_id: 4411
    name: Acme Corp
    premium_support: true
    timezone: Europe/Amsterdam
    super_admins:
      - {user_id: u-19, email: ana@acme.example, phone: "+31205550134"}
    users:
"""
ONCALL = """version: bench-e2e
people:
  - id: bench-l1
    name: Level One
    email: l1@support.example
    console: true
    paging_webhook: {url: "PAGER/l1", routing_key: R0BENCHL1000000000000000000000000}
  - id: bench-l2
    name: Level Two
    email: l2@support.example
    console: true
    paging_webhook: {url: "PAGER/l2", routing_key: R0BENCHL2000000000000000000000000}
schedules:
  primary: {timezone: UTC, rotation: [bench-l1], handoff: {weekday: mon, hour: 9},
            start: 2024-01-01}
  secondary: {timezone: UTC, rotation: [bench-l2], handoff: {weekday: mon, hour: 9},
              start: 2024-01-01}
escalation:
  - {level: 1, schedules: [primary]}
  - {level: 2, schedules: [secondary]}
team_channel: {name: bench team, console: true}
digest_interval: 5m
link_template: "https://helpdesk.example/tickets/{ticket_id}"
channels: {page: [paging_webhook], remind: [console], notify: [console]}
"""


def write_files(workdir: Path, pager_url: str) -> dict[str, str]:
    """ACCOUNTS_FILE (portal 4411: a Super Admin and 20 users) and ONCALL_FILE (one person
    on each of levels 1 and 2, pages to `pager_url`; nothing else leaves the host)."""
    users = "".join(f"      - {{user_id: {u}, email: {e}}}\n" for u, e in USERS)
    accounts, oncall = workdir / "accounts.yaml", workdir / "oncall.yaml"
    accounts.write_text(ACCOUNTS + users)
    oncall.write_text(ONCALL.replace("PAGER", pager_url))
    return {"ACCOUNTS_FILE": str(accounts), "ONCALL_FILE": str(oncall)}


@contextlib.contextmanager
def stores(kind: str, workdir: Path) -> Iterator[dict[str, str]]:
    """SLA_STORE_URL and NOTIFIER_STORE_URL: SQLite files in `workdir`, or one fresh
    PostgreSQL database for this run, dropped afterwards."""
    if kind == "sqlite":
        yield {
            "SLA_STORE_URL": str(workdir / "sla.db"),
            "NOTIFIER_STORE_URL": str(workdir / "notifier.db"),
        }
        return
    import psycopg

    name = f"bench_e2e_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        url = PG_URL.rsplit("/", 1)[0] + f"/{name}"
        yield {"SLA_STORE_URL": url, "NOTIFIER_STORE_URL": url}
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


# -- the paging endpoint ----------------------------------------------------------------
@dataclass
class Pages:
    """What the paging endpoint saw: first arrival (monotonic) per ticket id, per path."""

    first: dict[str, float] = field(default_factory=dict)
    posts: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0  # triggers whose dedup_key (`<ticket_id>:<reason>`) came before
    keys: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, path: str, body: dict[str, Any], at: float) -> None:
        key = str(body.get("dedup_key", ""))
        with self.lock:
            self.posts[path] = self.posts.get(path, 0) + 1
            if body.get("event_action") != "trigger":
                return
            self.duplicates += key in self.keys
            self.keys.add(key)
            if path.endswith("/l1"):
                self.first.setdefault(key.split(":", 1)[0], at)


@contextlib.contextmanager
def paging_endpoint() -> Iterator[tuple[str, Pages]]:
    """A PagerDuty Events v2 look-alike on 127.0.0.1 (a free port): notes each page's
    arrival and answers 202."""
    pages = Pages()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            at = time.monotonic()
            try:
                pages.record(self.path, json.loads(raw), at)
            except ValueError:
                pages.record(self.path + "#invalid", {}, at)
            reply = b'{"status":"success","message":"Event processed"}'
            self.send_response(202)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="pager", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pages", pages
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# -- the service processes ----------------------------------------------------------------
def cli(root: Path, *args: str) -> list[str]:
    """The CLI of the tree at `root`: the venv's entry point for this tree, else -m."""
    script = Path(sys.executable).with_name("premium-support")
    if root == ROOT and script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "services.cli", *args]


def cpu_seconds(pid: int) -> float:
    """utime+stime of `pid`, of its waited-for children and of its live descendants."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = sum(int(v) for v in stat[11:15])  # utime stime cutime cstime
        total = ticks / CLK_TCK
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += cpu_seconds(int(child))
        return total
    except (FileNotFoundError, ProcessLookupError):
        return math.nan


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all cores from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    total = sum(values[:8])
    return total - values[3] - values[4], total


def broker_pid() -> int | None:
    """The local RabbitMQ's Erlang VM (read-only: for its CPU seconds)."""
    found = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _comm(p) == "beam.smp"]
    return int(found[0].name) if len(found) == 1 else None


def _comm(proc: Path) -> str:
    try:
        return (proc / "comm").read_text().strip()
    except OSError:
        return ""


@dataclass
class Service:
    name: str  # intake | sla-timer | notifier
    cmd: list[str]
    env: dict[str, str]
    cwd: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=self.cwd,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # a Ctrl-C reaches the bench, which stops us in order
            )

    def cpu(self) -> float:
        return cpu_seconds(self.proc.pid) if self.proc else math.nan

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise RuntimeError(
                f"{self.name} exited with {self.proc.returncode}; log tail:\n{self.tail()}"
            )

    def stop(self, timeout: float = 20.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            print(f"{self.name} ignored SIGTERM for {timeout:.0f} s: SIGKILL", file=sys.stderr)
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self, lines: int = 15) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


def wait_ready(
    url: str, topo: Topology, services: list[Service], timeout: float = 60.0
) -> tuple[float, list[str]]:
    """Until every service queue has a consumer (passive declares): (seconds taken, the
    queues still without one after `timeout`, which the run then reports)."""
    t0 = time.monotonic()
    conn = pika.BlockingConnection(pika_parameters(url))
    try:
        channel = conn.channel()
        waiting = list(topo.queues)
        while waiting and time.monotonic() - t0 < timeout:
            for service in services:
                service.check_alive()
            for queue in list(waiting):
                if channel.queue_declare(topo.full(queue), passive=True).method.consumer_count:
                    waiting.remove(queue)
            time.sleep(0.1)
    finally:
        conn.close()
    return time.monotonic() - t0, waiting


# -- the topology of a run, its queue depths, its clean-up ---------------------------------
QUEUES_OF_TREE = (
    "import json; from services.runtime.names import SERVICE_BINDINGS as B; "
    "print(json.dumps([v[0] for v in B.values()]))"
)
EXCHANGES = ("support.inbound", "support.events", "support.inbound.unrouted")


@dataclass
class Topology:
    """The names of one run; `queues` are the service queues of the tree under test
    (read from its own services.runtime.names, so a queue added there is watched too)."""

    prefix: str
    queues: list[str]

    @classmethod
    def of_tree(cls, prefix: str, root: Path, env: dict[str, str]) -> Topology:
        out = subprocess.run(
            [sys.executable, "-c", QUEUES_OF_TREE],
            cwd=root,
            env=env,
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout
        return cls(prefix, list(json.loads(out)))

    def full(self, name: str) -> str:
        return self.prefix + name

    @property
    def watched(self) -> list[str]:
        return [*self.queues, *(f"{q}.dead" for q in self.queues), "support.unrouted"]


def credentials(url: str) -> tuple[str, str]:
    parsed = urlparse(url)
    return parsed.username or "guest", parsed.password or "guest"


def management_answers(mgmt: str, url: str) -> bool:
    try:
        return httpx.get(f"{mgmt}/api/overview", auth=credentials(url), timeout=2).is_success
    except httpx.HTTPError:
        return False


def management_names(mgmt: str, url: str, kind: str, prefix: str) -> list[str]:
    """Names of the queues or exchanges starting with `prefix`, from the management API."""
    listed = httpx.get(
        f"{mgmt}/api/{kind}/%2F", params={"columns": "name"}, auth=credentials(url), timeout=5
    )
    listed.raise_for_status()
    return [x["name"] for x in listed.json() if x["name"].startswith(prefix)]


class DepthSampler(threading.Thread):
    """Every `interval` s: messages per queue of the run (unprefixed name -> count).

    With the management API: ready + unacked of every queue of the prefix (the broker
    refreshes these every few seconds). Without it: passive declares of the watched
    queues, which see the ready messages only (unacked: at most PREFETCH_COUNT per
    consumer)."""

    def __init__(self, url: str, topo: Topology, mgmt: str | None, interval: float = 1.0) -> None:
        super().__init__(name="depths", daemon=True)
        self.url, self.topo, self.mgmt, self.interval = url, topo, mgmt, interval
        self.samples: list[tuple[float, dict[str, int]]] = []  # (monotonic, depths)
        self.halt = threading.Event()
        self.error: BaseException | None = None

    @property
    def source(self) -> str:
        return "management API, ready+unacked" if self.mgmt else "passive declares, ready only"

    def run(self) -> None:
        conn = None
        try:
            if not self.mgmt:
                conn = pika.BlockingConnection(pika_parameters(self.url))
            next_at = time.monotonic()
            while not self.halt.is_set():
                depths = self._management() if self.mgmt else self._passive(conn)
                self.samples.append((time.monotonic(), depths))
                next_at += self.interval
                self.halt.wait(max(0.0, next_at - time.monotonic()))
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            if conn is not None and conn.is_open:
                conn.close()

    def _passive(self, conn: Any) -> dict[str, int]:
        out, channel = {}, conn.channel()
        for queue in self.topo.watched:
            try:
                out[queue] = channel.queue_declare(
                    self.topo.full(queue), passive=True
                ).method.message_count
            except pika.exceptions.ChannelClosedByBroker:  # 404: this tree has no such queue
                channel = conn.channel()
        channel.close()
        return out

    def _management(self) -> dict[str, int]:
        assert self.mgmt is not None
        response = httpx.get(
            f"{self.mgmt}/api/queues/%2F",
            params={"columns": "name,messages_ready,messages_unacknowledged"},
            auth=credentials(self.url),
            timeout=3,
        )
        response.raise_for_status()
        prefix = self.topo.prefix
        return {
            q["name"].removeprefix(prefix): int(q.get("messages_ready") or 0)
            + int(q.get("messages_unacknowledged") or 0)
            for q in response.json()
            if q["name"].startswith(prefix) and not q["name"].endswith("support.events.log")
        }

    def stop(self) -> None:
        self.halt.set()
        self.join(10)


def delete_topology(url: str, topo: Topology, mgmt: str | None) -> None:
    """Delete the queues and exchanges of the run: the known names, and with the
    management API whatever else starts with the prefix."""
    if not topo.prefix.startswith("bench-e2e-"):
        raise ValueError(f"refusing to delete with prefix {topo.prefix!r}")
    queues = [topo.full(q) for q in (*topo.watched, "support.events.log")]
    # Each queue's `.dlx` (the runtime's dead letters) too: a tree that has none ignores it.
    exchanges = [topo.full(x) for x in (*EXCHANGES, *(f"{q}.dlx" for q in topo.queues))]
    if mgmt:
        queues += management_names(mgmt, url, "queues", topo.prefix)
        exchanges += management_names(mgmt, url, "exchanges", topo.prefix)
    conn = pika.BlockingConnection(pika_parameters(url))
    try:
        for name in dict.fromkeys(queues):
            with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):
                conn.channel().queue_delete(name)
        for name in dict.fromkeys(exchanges):
            with contextlib.suppress(pika.exceptions.ChannelClosedByBroker):
                conn.channel().exchange_delete(name)
    finally:
        conn.close()


# -- figures ---------------------------------------------------------------------------------
def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile; nan for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, y); 0 for fewer than 3 points."""
    if len(points) < 3:
        return 0.0
    mt = sum(t for t, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    var = sum((t - mt) ** 2 for t, _ in points)
    return sum((t - mt) * (y - my) for t, y in points) / var if var else 0.0
