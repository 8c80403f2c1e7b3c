"""A private RabbitMQ node for tests that stop, restart or cut their broker.

The shared broker (AMQP_URL) is never stopped by a test: other test runs and other
people use it. A test that needs the broker gone starts a node of its own on this
host instead: its own node name (`ps-test-<random>@localhost`), AMQP port and
distribution port, its data and logs in a temporary directory, no plugins (the
management plugin alone costs ~130 MB and seconds of boot) and its own Erlang cookie:
HOME points at the temporary directory, so the server creates a fresh cookie there and
the CLI calls made here read it. Those calls therefore cannot reach the shared node
even by mistake (its cookie is another one).

The node runs in the foreground as a child process in a session of its own, so
teardown can always kill it (and only it) by its process group, then remove its
directory. Booting takes ~5-15 s: use the module-scoped `rabbit_node` fixture.

Needs `rabbitmq-server` and `rabbitmqctl` on this host (the Debian package, the generic
unix tarball or Homebrew). On Debian the commands on PATH are a wrapper that switches to
the `rabbitmq` user (and so to its HOME and cookie); the real scripts in
/usr/lib/rabbitmq/bin are used instead, which run as the current user, root included.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.broker import missing

DEBIAN_SBIN = Path("/usr/lib/rabbitmq/bin")
# rabbitmqctl's own distribution ports default to 35672-35682 (RabbitMQ's dist port
# 25672 + 10000): an AMQP port there would collide with every CLI call on this host.
CLI_DIST_PORTS = range(35672, 35683)
BOOT_TIMEOUT_S = 90.0


def _sbin() -> Path:
    """Where the real rabbitmq-server / rabbitmqctl scripts are (not the Debian wrapper)."""
    override = os.environ.get("RABBITMQ_SBIN")
    if override:
        return Path(override)
    if (DEBIAN_SBIN / "rabbitmq-server").exists():
        return DEBIAN_SBIN
    found = shutil.which("rabbitmq-server")
    if found is None:
        missing("rabbitmq-server is not installed on this host: no private RabbitMQ node")
    resolved = Path(found).resolve()
    if resolved.name == "rabbitmq-script-wrapper":
        missing(f"{found} is the Debian wrapper and {DEBIAN_SBIN} is missing")
    return resolved.parent


def _free_port(avoid: set[int]) -> int:
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in avoid and port not in CLI_DIST_PORTS:
            return port


class RabbitNode:
    """One private node. `stop()`/`start()` stop and start the RabbitMQ application
    (the AMQP port closes, every connection drops, queues and messages stay on disk;
    the Erlang VM stays up, so `start()` takes ~2 s); `shutdown()`/`boot()` stop and
    start the whole node process (a real broker restart; boot ~5-15 s)."""

    def __init__(self, base: Path | None = None, name: str | None = None) -> None:
        self.base = Path(base or tempfile.mkdtemp(prefix="ps-rabbit-"))
        self.node = f"{name or 'ps-test-' + uuid.uuid4().hex[:8]}@localhost"
        self.port = _free_port(set())
        self.dist_port = _free_port({self.port})
        # The CLI takes its own distribution port in dist_port+10000 .. +10010.
        while self.port in range(self.dist_port + 10000, self.dist_port + 10011):
            self.dist_port = _free_port({self.port})
        self.sbin = _sbin()
        self.proc: subprocess.Popen[bytes] | None = None
        self.tls_port: int | None = None
        self.ca_file: Path | None = None  # with a TLS listener: the certificate to trust
        for sub in ("mnesia", "log"):
            (self.base / sub).mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")
        # Our own config file (the host's may bind 5672) and env file (the host's may set
        # NODENAME): nothing of the shared node's setup applies here.
        (self.base / "rabbitmq.conf").write_text(
            "# private test node\nvm_memory_high_watermark.relative = 0.2\n"
        )
        (self.base / "rabbitmq-env.conf").write_text("")
        self.env = os.environ | {
            "HOME": str(self.base),  # the Erlang cookie: $HOME/.erlang.cookie, ours alone
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / "node.pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            # Erlang distribution on loopback only.
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }
        self.env.pop("RABBITMQ_NODE_PORT_OVERRIDE", None)

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def enable_tls(self) -> Path:
        """Before `boot`: a TLS listener beside the plain one, with a self-signed
        certificate for 127.0.0.1 made by the openssl CLI; returns the certificate (the
        CA a client must trust). `tls_url` then reaches it."""
        cert, key = self.base / "cert.pem", self.base / "key.pem"
        request = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"]
        subject = ["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"]
        subprocess.run(
            ["openssl", *request, "-keyout", str(key), "-out", str(cert), *subject],
            check=True,
            capture_output=True,
        )
        cli_ports = range(self.dist_port + 10000, self.dist_port + 10011)
        self.tls_port = _free_port({self.port, self.dist_port, *cli_ports})
        with (self.base / "rabbitmq.conf").open("a") as conf:
            conf.write(
                f"listeners.ssl.default = 127.0.0.1:{self.tls_port}\n"
                f"ssl_options.cacertfile = {cert}\nssl_options.certfile = {cert}\n"
                f"ssl_options.keyfile = {key}\nssl_options.verify = verify_none\n"
                "ssl_options.fail_if_no_peer_cert = false\n"
            )
        self.ca_file = cert
        return cert

    @property
    def tls_url(self) -> str:
        return f"amqps://guest:guest@127.0.0.1:{self.tls_port}//"

    # -- the node process ---------------------------------------------------------
    def boot(self, timeout: float = BOOT_TIMEOUT_S) -> None:
        """Start the node process (with whatever data it has) and wait until it serves."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError(f"{self.node} is already running")
        out = open(self.base / "console.log", "ab")  # noqa: SIM115 - the child holds it
        try:
            self.proc = subprocess.Popen(
                [str(self.sbin / "rabbitmq-server")],
                env=self.env,
                cwd=self.base,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: killed as one
            )
        finally:
            out.close()
        self._await(timeout)

    def shutdown(self) -> None:
        """Stop the whole node: a broker that is gone, not just its AMQP port."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(subprocess.SubprocessError):
            self.ctl("shutdown", timeout=60)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """SIGKILL the node's process group (beam.smp and its helpers), at once."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)

    def close(self) -> None:
        """Teardown: kill the node whatever its state, then remove its directory."""
        try:
            self.kill()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    # -- the RabbitMQ application -----------------------------------------------------
    def stop(self) -> None:
        """Stop the RabbitMQ application: the AMQP port closes and every client
        connection drops; messages in durable queues stay."""
        self.ctl("stop_app", timeout=60)

    def start(self, timeout: float = BOOT_TIMEOUT_S) -> None:
        self.ctl("start_app", timeout=timeout)
        self._await(timeout)

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    # -- connections ----------------------------------------------------------------
    def connections(self) -> list[tuple[str, str]]:
        """(pid, connection_name) of every client connection."""
        listing = self.ctl(
            "list_connections", "pid", "client_properties", "-q", "--no-table-headers"
        )
        found = []
        for line in listing.splitlines():
            pid, _, props = line.partition("\t")
            name = ""
            marker = '{"connection_name","'
            if marker in props:
                name = props.split(marker, 1)[1].split('"}', 1)[0]
            found.append((pid, name))
        return found

    def close_connections(self, name_substring: str, reason: str = "test: cut") -> int:
        """Force-close the connections whose client-given name contains `name_substring`
        (the runtime names them `<prefix><service>`, `<prefix><service> publisher`...)."""
        pids = [pid for pid, name in self.connections() if name_substring in name]
        procs = [
            subprocess.Popen(
                [str(self.sbin / "rabbitmqctl"), "-n", self.node, "close_connection", pid, reason],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for pid in pids
        ]
        for proc in procs:
            proc.wait(timeout=60)
        return len(pids)

    # -- plumbing ---------------------------------------------------------------------
    def ctl(self, *args: str, timeout: float = 60) -> str:
        done = subprocess.run(
            [str(self.sbin / "rabbitmqctl"), "-n", self.node, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if done.returncode != 0:
            raise subprocess.SubprocessError(
                f"rabbitmqctl {' '.join(args)} on {self.node} exited {done.returncode}: "
                f"{(done.stderr or done.stdout).strip()[-2000:]}"
            )
        return done.stdout

    def amqp_open(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), 0.5):
                return True
        except OSError:
            return False

    def _await(self, timeout: float) -> None:
        """Until the AMQP port answers and `await_startup` agrees; fail with the log."""
        deadline = time.monotonic() + timeout
        while not self.amqp_open():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.node} exited {self.proc.returncode}:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.node} not up within {timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.2)
        self.ctl("await_startup", "--timeout", str(int(max(1, deadline - time.monotonic()))))

    def log_tail(self, lines: int = 40) -> str:
        text = []
        for path in (self.base / "console.log", self.base / "log" / f"{self.node}.log"):
            if path.exists():
                text += path.read_text(errors="replace").splitlines()[-lines:]
        return "\n".join(text)


@contextlib.contextmanager
def private_rabbit(tls: bool = False) -> Iterator[RabbitNode]:
    """A booted private node (with a TLS listener too if `tls`); killed and removed
    afterwards whatever happened."""
    node = RabbitNode()
    try:
        if tls:
            node.enable_tls()
        node.boot()
    except Exception as exc:
        log = node.log_tail()
        node.close()
        pytest.fail(f"cannot start a private RabbitMQ node on this host: {exc}\n{log}")
    try:
        yield node
    finally:
        node.close()


@pytest.fixture(scope="module")
def rabbit_node() -> Iterator[RabbitNode]:
    """A private RabbitMQ node for this module's tests (boot once: ~5-15 s)."""
    with private_rabbit() as node:
        yield node


def close_shared_connections(prefix: str, reason: str = "test: cut") -> list[str]:
    """Force-close, on the shared node, the connections whose client-given name starts
    with `prefix` (one test's own services): never anyone else's. One listing, then the
    closes in parallel (each rabbitmqctl call costs about a second)."""
    if not prefix or not prefix.strip():
        raise ValueError("an empty prefix would match every connection")
    listing = subprocess.run(
        ["rabbitmqctl", "list_connections", "pid", "client_properties", "-q", "--no-table-headers"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    marker = '{"connection_name","'
    chosen: list[tuple[str, str]] = []
    for line in listing.splitlines():
        pid, _, props = line.partition("\t")
        if marker not in props:
            continue
        name = props.split(marker, 1)[1].split('"}', 1)[0]
        if name.startswith(prefix):
            chosen.append((pid, name))
    procs = [
        subprocess.Popen(
            ["rabbitmqctl", "close_connection", pid, reason],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for pid, _ in chosen
    ]
    for proc in procs:
        proc.wait(timeout=60)
    return [name for _, name in chosen]
