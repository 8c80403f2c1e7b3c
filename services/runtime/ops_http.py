"""`/metrics` and `/healthz` for Prometheus and orchestrators (DESIGN.md section 6).

One small threaded HTTP server per process on METRICS_HOST:METRICS_PORT, started and
stopped by `run_services`: `run all` serves the three services' metrics from their one
shared registry and reports every service's checks by name. A check is a callable that
raises when its dependency is unusable; `/healthz` runs them all on each request (they
are cheap: a flag, a SELECT 1) and answers 503 naming the ones that failed.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from services.runtime.config import RuntimeSettings

HealthCheck = Callable[[], None]
Checks = Mapping[str, Mapping[str, HealthCheck]]  # service -> check name -> check
ERROR_CHARS = 300

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


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a hung probe must not hold up shutdown

    def __init__(
        self, address: tuple[str, int], registry: CollectorRegistry, checks: Checks
    ) -> None:
        super().__init__(address, _Handler)
        self.registry = registry
        self.checks = checks


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, CONTENT_TYPE_LATEST, generate_latest(self.server.registry))
        elif path == "/healthz":
            status, body = health_report(self.server.checks)
            self._send(status, "application/json", json.dumps(body).encode())
        else:
            self._send(404, "text/plain; charset=utf-8", b"try /metrics or /healthz\n")

    def _send(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        # NOTE: the stdlib writes every request to stderr; scrapes every few seconds
        # would drown the JSON logs.
        log.debug("ops_http.request", client=self.client_address[0], line=format % args)


class OpsServer:
    def __init__(self, server: _Server) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="ops-http", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_ops(
    settings: RuntimeSettings, registry: CollectorRegistry, checks: Checks
) -> OpsServer | None:
    """Serve until `stop()`; None when METRICS_PORT is 0 or the port cannot be bound."""
    if settings.metrics_port == 0:
        log.info("ops_http.disabled", reason="METRICS_PORT=0")
        return None
    address = (settings.metrics_host, settings.metrics_port)
    try:
        server = _Server(address, registry, checks)
    except OSError as exc:
        # NOTE: observability must never stop the pipeline: a taken port (say, a second
        # replica on one host) is logged loudly and the services run on without it.
        log.error("ops_http.bind_failed", host=address[0], port=address[1], error=str(exc))
        return None
    log.info("ops_http.serving", host=address[0], port=address[1], paths=["/metrics", "/healthz"])
    return OpsServer(server)
