"""`/metrics` and `/healthz` for Prometheus and orchestrators (DESIGN.md section 6).

One small HTTP server per process on METRICS_HOST:METRICS_PORT (127.0.0.1 unless told
otherwise), started and stopped by `run_services`: `run all` serves the three services'
metrics from their one shared registry and reports every service's checks by name. A
check is a callable that raises when its dependency is unusable; `/healthz` runs them
all on each request (they are cheap: a flag, a SELECT 1) and answers 503 naming the
ones that failed.

What a connection costs is bounded: one event-loop thread holds every connection and
reads request heads; answers are built on two small thread pools (a hung health check
never holds up a scrape). A connection that has not sent its request head within the
request timeout is closed, and beyond `MAX_PENDING` such connections the oldest is
closed at once, so idle sockets neither pile up threads nor file descriptors.
"""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from http import HTTPStatus
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from services.runtime.config import RuntimeSettings

HealthCheck = Callable[[], None]
Checks = Mapping[str, Mapping[str, HealthCheck]]  # service -> check name -> check
Answer = tuple[int, str, bytes]  # status, content type, body
ERROR_CHARS = 300
REQUEST_TIMEOUT_S = 5.0  # to send the request head, and to take the answer
ANSWER_TIMEOUT_S = 10.0  # a scrape or a health report that takes longer is a 503
MAX_PENDING = 64  # connections still sending their request head
HEAD_LIMIT = 8192
WORKERS = 2  # per pool: one for /metrics, one for /healthz

log = structlog.get_logger("runtime.ops_http")


def health_report(checks: Checks) -> tuple[int, dict[str, Any]]:
    """(HTTP status, JSON body): 200 when every check passed, else 503 with the failing
    ones named `<service>.<check>` and each one's error."""
    services: dict[str, dict[str, Any]] = {}
    failing: list[str] = []
    for service, named in checks.items():
        results = services.setdefault(service, {})
        for name, check in named.items():
            try:
                check()
            except Exception as exc:  # any failure is the answer, never a crashed probe
                error = f"{type(exc).__name__}: {exc}"[:ERROR_CHARS]
                results[name] = {"ok": False, "error": error}
                failing.append(f"{service}.{name}")
            else:
                results[name] = {"ok": True}
    body = {"status": "unhealthy" if failing else "ok", "failing": failing, "services": services}
    return (503 if failing else 200), body


def response(status: int, content_type: str, body: bytes, head_only: bool = False) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close",  # one request per connection: nothing idles after an answer
    ]
    if status == 405:
        lines.append("Allow: GET, HEAD")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("ascii") + (b"" if head_only else body)


class Workers:
    """A fixed set of daemon threads running jobs in turn (a hung health check must not
    hold up the process's exit, as ThreadPoolExecutor's threads, joined at exit, would)."""

    def __init__(self, count: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[tuple[Future[Answer], Callable[[], Answer]] | None]
        self._jobs = queue.SimpleQueue()
        self._count = count
        for n in range(count):
            threading.Thread(target=self._work, name=f"{name}-{n}", daemon=True).start()

    def submit(self, job: Callable[[], Answer]) -> Future[Answer]:
        future: Future[Answer] = Future()
        self._jobs.put((future, job))
        return future

    def close(self) -> None:
        for _ in range(self._count):
            self._jobs.put(None)

    def _work(self) -> None:
        while (item := self._jobs.get()) is not None:
            future, job = item
            if not future.set_running_or_notify_cancel():
                continue  # its connection gave up waiting
            try:
                future.set_result(job())
            except Exception as exc:
                future.set_exception(exc)


class OpsServer:
    """Serves on a bound socket until `stop()`."""

    def __init__(
        self,
        sock: socket.socket,
        registry: CollectorRegistry,
        checks: Checks,
        request_timeout_s: float = REQUEST_TIMEOUT_S,
    ) -> None:
        self._sock, self.registry, self.checks = sock, registry, checks
        self.timeout_s = request_timeout_s
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self.port = int(self.address[1])
        self._pools = {
            path: Workers(WORKERS, f"ops-http-{path[1:]}") for path in ("/metrics", "/healthz")
        }
        self._pending: dict[asyncio.StreamWriter, None] = {}  # insertion order: oldest first
        self._open: set[asyncio.StreamWriter] = set()
        self._loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, args=(started,), name="ops-http", daemon=True
        )
        self._thread.start()
        started.wait(timeout=5)

    def stop(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        for pool in self._pools.values():
            pool.close()

    def _run(self, started: threading.Event) -> None:
        loop = self._loop
        asyncio.set_event_loop(loop)
        server = loop.run_until_complete(
            asyncio.start_server(self._serve, sock=self._sock, limit=HEAD_LIMIT, backlog=128)
        )
        started.set()
        try:
            loop.run_forever()
        finally:
            server.close()  # the listening socket: new connections are refused
            for writer in list(self._open):
                writer.close()
            tasks = asyncio.all_tasks(loop)
            for task in tasks:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        self._admit(writer)
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.timeout_s)
            self._pending.pop(writer, None)
            writer.write(await self._answer(head))
            await asyncio.wait_for(writer.drain(), self.timeout_s)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass  # too slow, gone, or a head too long: the connection is closed, no answer
        finally:
            self._pending.pop(writer, None)
            self._open.discard(writer)
            writer.close()

    def _admit(self, writer: asyncio.StreamWriter) -> None:
        if len(self._pending) >= MAX_PENDING:
            oldest = next(iter(self._pending))
            del self._pending[oldest]
            oldest.close()  # its reader sees EOF and its handler ends
        self._pending[writer] = None

    async def _answer(self, head: bytes) -> bytes:
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = line.split(" ")
        if len(parts) != 3:
            return response(400, "text/plain; charset=utf-8", b"bad request\n")
        method, target, _ = parts
        path = target.split("?", 1)[0]
        log.debug("ops_http.request", line=line[:200])
        if method not in ("GET", "HEAD"):
            return response(405, "text/plain; charset=utf-8", b"GET or HEAD\n")
        if path not in self._pools:
            return response(404, "text/plain; charset=utf-8", b"try /metrics or /healthz\n")
        work = asyncio.wrap_future(self._pools[path].submit(lambda: self._build(path)))
        try:
            status, content_type, body = await asyncio.wait_for(work, ANSWER_TIMEOUT_S)
        except TimeoutError:
            status, content_type, body = 503, "text/plain; charset=utf-8", b"timed out\n"
        return response(status, content_type, body, head_only=method == "HEAD")

    def _build(self, path: str) -> Answer:
        try:
            if path == "/metrics":
                return 200, CONTENT_TYPE_LATEST, generate_latest(self.registry)
            status, body = health_report(self.checks)
            return status, "application/json", json.dumps(body).encode()
        except Exception as exc:  # a collector's bug: an answer, never a dropped request
            log.error("ops_http.failed", path=path, error=f"{type(exc).__name__}: {exc}")
            return 500, "text/plain; charset=utf-8", b"internal error\n"


def serve_ops(
    settings: RuntimeSettings,
    registry: CollectorRegistry,
    checks: Checks,
    *,
    request_timeout_s: float = REQUEST_TIMEOUT_S,
) -> OpsServer | None:
    """Serve until `stop()`; None when METRICS_PORT is 0 or the port cannot be bound."""
    if settings.metrics_port == 0:
        log.info("ops_http.disabled", reason="METRICS_PORT=0")
        return None
    address = (settings.metrics_host, settings.metrics_port)
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    try:
        sock = socket.create_server(address, family=family)
    except OSError as exc:
        # NOTE: observability must never stop the pipeline: a taken port (say, a second
        # replica on one host) is logged loudly and the services run on without it.
        log.error("ops_http.bind_failed", host=address[0], port=address[1], error=str(exc))
        return None
    log.info("ops_http.serving", host=address[0], port=address[1], paths=["/metrics", "/healthz"])
    return OpsServer(sock, registry, checks, request_timeout_s)
