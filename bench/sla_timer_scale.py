"""sla_timer at scale: N open clocks in the store, the real service in a subprocess.

For each N:
  1. N open clocks are written STRAIGHT INTO THE STORE (not through the broker): the
     real schema (`ClockStore.migrate()`), bulk inserts of `--batch` rows per
     SQLAlchemy Core executemany. The clock JSON comes from the real `open_clock` for
     four realistic tickets (templates); per row the ticket_id, correlation_id,
     due_at and warn_at are varied, due times spread over the next days.
  2. The real service (`python -m services.cli run sla-timer`) starts in a subprocess;
     ready = its consumer on `<prefix>sla_timer.events` shows up (passive
     queue_declare). Its peak RSS is VmHWM from /proc/<pid>/status. It is killed
     (SIGKILL) and started again: restart-to-ready.
  3. Before the restart, 2,000 clocks are rewritten in the store to fall due together
     `--fire-in` seconds after that start; every sla.breached event is read from a
     queue bound to `<prefix>support.events`: lateness = fired_at - due_at.

Targets for 1,000,000 clocks: peak RSS < 300 MB, restart-to-ready < 10 s, p99 lateness
< 1 s.

Run: .venv/bin/python bench/sla_timer_scale.py [--clocks 100000 1000000]
     [--store sqlite|postgresql]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pika
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support helpers

from schemas.ticket import Ticket
from services.sla_timer.clock import Clock, open_clock
from services.sla_timer.policy import load_policy
from services.sla_timer.store import ClockStore, clocks, engine_for
from services.upstream import pika_parameters
from tests.support.broker import delete_topology, new_prefix

ROOT = Path(__file__).resolve().parent.parent
PG_URL = "postgresql://postgres@127.0.0.1:5432/test"
TARGET_N = 1_000_000
TARGETS = {"rss_mb": 300.0, "ready_s": 10.0, "p99_ms": 1000.0}

# Four ticket shapes the default policy gives a clock: (channel, role, severity, call_kind).
SHAPES = (
    ("email", "super_admin", "business_critical", None),
    ("email", "super_admin", "standard", None),
    ("chat", "super_admin", "standard", None),
    ("phone", "user", "standard", "callback_request"),
)


# -- 1. clocks straight into the store ------------------------------------------------------
def templates(now: datetime) -> list[dict[str, Any]]:
    """Clock JSON from the real open_clock, one per ticket shape."""
    policy = load_policy()
    out = []
    for i, (channel, role, severity, call_kind) in enumerate(SHAPES):
        ticket = Ticket(
            ticket_id=f"T-{channel}-{i:016x}",
            channel=channel,
            portal_id=4411,
            account_name="Acme Corp",
            premium=True,
            timezone="Europe/Amsterdam",
            submitter={
                "role": role,
                "user_id": "u-19",
                "email": "ana@acme.example",
                "phone": "+31201234567" if channel == "phone" else None,
                "name": "Ana Ruiz",
            },
            severity=severity,
            submitter_marked_critical=severity == "business_critical",
            call_kind=call_kind,
            subject="Login outage",
            text="Since 09:50 nobody on our team can log in. This is blocking our launch.",
            created_at=now,
        )
        opened = open_clock(ticket, policy, str(uuid.uuid4()))
        if opened is None:
            raise RuntimeError(f"the default policy gives {SHAPES[i]} no clock")
        clock, _ = opened
        data = clock.model_dump(mode="json")
        # warn_at as an offset before due_at, kept per row
        data["_warn_before"] = (clock.due_at - clock.warn_at) if clock.warn_at else None
        out.append(data)
    return out


def iso(value: datetime) -> str:
    return f"{value:%Y-%m-%dT%H:%M:%S.%f}Z"  # UTC, as pydantic writes it


def clock_rows(
    tpls: list[dict[str, Any]], start: int, stop: int, now: datetime, rng: random.Random
) -> list[dict[str, Any]]:
    """Rows i in [start, stop): due uniformly in now + [1 h, 7 days]; next_fire_at as
    Clock.next_fire() would give (the warning, where the rule has one)."""
    rows = []
    for i in range(start, stop):
        tpl = tpls[i % len(tpls)]
        due = now + timedelta(seconds=rng.uniform(3600.0, 7 * 86400.0))
        warn_before = tpl["_warn_before"]
        warn = due - warn_before if warn_before else None
        data = {
            **tpl,
            "ticket_id": f"T-{tpl['channel']}-{i:016x}",
            "correlation_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "due_at": iso(due),
            "warn_at": iso(warn) if warn else None,
        }
        del data["_warn_before"]
        rows.append(
            {
                "ticket_id": data["ticket_id"],
                "state": "running",
                "next_fire_at": warn if warn and warn < due else due,
                "policy_version": tpl["policy_version"],
                "data": json.dumps(data),
                "updated_at": now,
            }
        )
    return rows


@dataclass
class Ingest:
    generate_s: float = 0.0
    insert_s: float = 0.0


def load_clocks(store: ClockStore, n: int, batch: int) -> Ingest:
    now = datetime.now(UTC)
    tpls = templates(now)
    rng = random.Random(n)
    ingest = Ingest()
    for start in range(0, n, batch):
        t0 = time.perf_counter()
        rows = clock_rows(tpls, start, min(n, start + batch), now, rng)
        if start == 0:  # the rows are what the service itself would read back
            for row in rows[:100]:
                clock = Clock.model_validate_json(row["data"])
                assert clock.next_fire() == row["next_fire_at"], row
        t1 = time.perf_counter()
        with store.engine.begin() as conn:
            conn.execute(clocks.insert(), rows)
        ingest.generate_s += t1 - t0
        ingest.insert_s += time.perf_counter() - t1
    return ingest


def arm_batch(store: ClockStore, ticket_ids: list[str], due: datetime) -> None:
    """Make these clocks fall due together at `due` (warn_at = due_at: breach only)."""
    with store.engine.begin() as conn:
        rows = conn.execute(
            sa.select(clocks.c.ticket_id, clocks.c.data).where(clocks.c.ticket_id.in_(ticket_ids))
        ).all()
        updates = []
        for row in rows:
            data = json.loads(row.data) | {"due_at": iso(due), "warn_at": iso(due)}
            updates.append({"tid": row.ticket_id, "nfa": due, "d": json.dumps(data)})
        conn.execute(
            clocks.update()
            .where(clocks.c.ticket_id == sa.bindparam("tid"))
            .values(next_fire_at=sa.bindparam("nfa"), data=sa.bindparam("d")),
            updates,
        )
    if len(rows) != len(ticket_ids):
        raise RuntimeError(f"armed {len(rows)} of {len(ticket_ids)} clocks")


@contextmanager
def clock_store(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh store URL: a SQLite file in `workdir`, or a new PostgreSQL schema."""
    if kind == "sqlite":
        yield str(workdir / "clocks.db")
        return
    schema = f"sla_bench_{uuid.uuid4().hex[:10]}"
    admin = engine_for(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


# -- 2. the service in a subprocess --------------------------------------------------------
def cli(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("premium-support")
    return (
        [str(script), *args] if script.exists() else [sys.executable, "-m", "services.cli", *args]
    )


def service_env(url: str, prefix: str, store_url: str) -> dict[str, str]:
    return os.environ | {
        "AMQP_URL": url,
        "AMQP_PREFIX": prefix,
        "SLA_STORE_URL": store_url,
        "LOG_LEVEL": "warning",
    }


def vm_hwm_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def wait_consumers(
    url: str, queue: str, want: int, timeout: float, proc: subprocess.Popen[bytes] | None = None
) -> float:
    """Poll (passive queue_declare) until the queue has `want` consumers; returns the
    monotonic time that was first seen."""
    conn = pika.BlockingConnection(pika_parameters(url))
    try:
        channel = conn.channel()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if channel.queue_declare(queue, passive=True).method.consumer_count == want:
                return time.monotonic()
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"sla_timer exited with {proc.returncode} before ready")
            time.sleep(0.02)
        raise TimeoutError(f"{queue}: consumers did not reach {want} in {timeout} s")
    finally:
        conn.close()


@dataclass
class Service:
    cmd: list[str]
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.started = time.monotonic()
            self.proc = subprocess.Popen(
                self.cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT
            )

    def ready_s(self, url: str, queue: str, timeout: float) -> float:
        return wait_consumers(url, queue, 1, timeout, self.proc) - self.started

    def hwm_mb(self) -> float:
        assert self.proc is not None
        return vm_hwm_mb(self.proc.pid)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


# -- 3. sla.breached events, read as they arrive ---------------------------------------------
class Breaches(threading.Thread):
    """Consumes the capture queue and notes when each event arrived (wall clock)."""

    def __init__(self, url: str, queue: str, expected: int) -> None:
        super().__init__(daemon=True, name="breaches")
        self.url, self.queue, self.expected = url, queue, expected
        self.arrived: list[tuple[float, dict[str, Any]]] = []
        self.halt = threading.Event()
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            conn = pika.BlockingConnection(pika_parameters(self.url))
            try:
                channel = conn.channel()
                channel.basic_consume(self.queue, self._on_message, auto_ack=True)
                while not self.halt.is_set() and len(self.arrived) < self.expected:
                    conn.process_data_events(time_limit=0.05)
            finally:
                conn.close()
        except BaseException as exc:  # reported by the main thread
            self.error = exc
        finally:
            self.done.set()

    def _on_message(self, _ch: Any, _method: Any, _props: Any, body: bytes) -> None:
        self.arrived.append((time.time(), json.loads(body)))


def bind_capture(url: str, exchange: str, queue: str) -> None:
    conn = pika.BlockingConnection(pika_parameters(url))
    try:
        channel = conn.channel()
        channel.queue_declare(queue, durable=True)
        channel.queue_bind(queue, exchange, "sla.breached.#")
    finally:
        conn.close()


def pct(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


# -- one size ---------------------------------------------------------------------------------
def run_size(n: int, args: argparse.Namespace) -> dict[str, float]:
    prefix = new_prefix()
    print(f"\n== {n:,} clocks, {args.store} store, AMQP_PREFIX={prefix}", flush=True)
    with ExitStack() as cleanup:  # unwinds: service, topology, store, temp dir
        workdir = Path(tempfile.mkdtemp(prefix="sla_scale_"))
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        store_url = cleanup.enter_context(clock_store(args.store, workdir))
        service = Service(
            [sys.executable, "-m", "services.cli", "run", "sla-timer"],
            service_env(args.url, prefix, store_url),
            workdir / "sla_timer.log",
        )
        try:
            return measure(n, args, prefix, store_url, service, cleanup)
        except BaseException:
            if service.log.exists():
                print("sla_timer log tail:\n" + service.tail(), file=sys.stderr)
            raise
    raise AssertionError("unreachable")


def measure(
    n: int,
    args: argparse.Namespace,
    prefix: str,
    store_url: str,
    service: Service,
    cleanup: ExitStack,
) -> dict[str, float]:
    figures: dict[str, float] = {}
    store = ClockStore(engine_for(store_url))
    cleanup.callback(store.engine.dispose)
    store.migrate()
    ingest = load_clocks(store, n, args.batch)
    total = ingest.generate_s + ingest.insert_s
    figures["ingest"] = n / ingest.insert_s
    print(
        f"loaded {n:,} open clocks STRAIGHT INTO THE STORE (bulk Core executemany, "
        f"{args.batch:,} rows per statement; clock JSON: open_clock templates for "
        f"{len(SHAPES)} ticket shapes, ticket_id/correlation_id/due_at/warn_at varied "
        f"per row, due in 1 h..7 days): insert {ingest.insert_s:.1f} s = "
        f"{figures['ingest']:,.0f} clocks/s; with row generation {total:.1f} s = "
        f"{n / total:,.0f} clocks/s",
        flush=True,
    )
    if args.store == "sqlite":
        size = sum(p.stat().st_size for p in Path(store_url).parent.glob("clocks.db*")) / 2**20
        print(f"store file: {size:,.0f} MB", flush=True)
    step = n // args.batch_due
    armed = [f"T-{SHAPES[i % len(SHAPES)][0]}-{i:016x}" for i in range(0, n, step)]
    armed = armed[: args.batch_due]

    subprocess.run(
        cli("topology", "declare"), env=service.env, cwd=ROOT, check=True, stdout=subprocess.DEVNULL
    )
    capture = f"{prefix}bench.sla_breached"
    cleanup.callback(delete_topology, args.url, prefix, [capture])
    bind_capture(args.url, f"{prefix}support.events", capture)
    queue = f"{prefix}sla_timer.events"
    cleanup.callback(service.stop, signal.SIGKILL)

    # first start: ready, run a while, peak RSS, kill -9
    service.start()
    figures["ready_first"] = service.ready_s(args.url, queue, args.ready_timeout)
    time.sleep(args.settle)
    figures["rss_idle"] = service.hwm_mb()
    print(
        f"first start: ready after {figures['ready_first']:.2f} s; VmHWM after "
        f"{args.settle:.0f} s more: {figures['rss_idle']:.0f} MB; kill -9",
        flush=True,
    )
    service.stop(signal.SIGKILL)
    wait_consumers(args.url, queue, 0, 30)

    # arm the batch in the store, restart, read the breaches as they arrive
    breaches = Breaches(args.url, capture, len(armed))
    breaches.start()
    due = datetime.now(UTC) + timedelta(seconds=args.fire_in)
    arm_batch(store, armed, due)
    store.engine.dispose()
    service.start()
    started_wall = time.time()
    figures["ready_restart"] = service.ready_s(args.url, queue, args.ready_timeout)
    due_after_start = due.timestamp() - started_wall
    breaches.done.wait(max(0.0, due.timestamp() - time.time()) + args.fire_timeout)
    breaches.halt.set()
    breaches.join(5)
    if breaches.error is not None:
        raise breaches.error
    time.sleep(0.5)
    figures["rss_fired"] = service.hwm_mb()
    figures["rss"] = max(figures["rss_idle"], figures["rss_fired"])
    service.stop()

    got = [body["data"] for _, body in breaches.arrived]
    if len(got) < len(armed):
        print(f"!! only {len(got)} of {len(armed)} sla.breached events arrived", flush=True)
    if not got:
        raise RuntimeError("no sla.breached events arrived")
    late = [
        (datetime.fromisoformat(d["fired_at"]) - datetime.fromisoformat(d["due_at"]))
        / timedelta(milliseconds=1)
        for d in got
    ]
    own = [float(d["lateness_ms"]) for d in got]
    figures |= {
        "p50": pct(late, 50),
        "p99": pct(late, 99),
        "max": max(late),
        "own_p50": pct(own, 50),
        "own_p99": pct(own, 99),
        "own_max": max(own),
        "arrived": len(got),
        "first_s": min(t for t, _ in breaches.arrived) - due.timestamp(),
        "all_s": max(t for t, _ in breaches.arrived) - due.timestamp(),
    }
    print(
        f"restart: ready after {figures['ready_restart']:.2f} s; {len(armed):,} clocks "
        f"due {due_after_start:.2f} s after that start "
        f"({'after' if due_after_start > figures['ready_restart'] else 'BEFORE'} ready); "
        f"{len(got):,} sla.breached arrived, first {figures['first_s']:.2f} s and all "
        f"{figures['all_s']:.2f} s after due; VmHWM after firing "
        f"{figures['rss_fired']:.0f} MB",
        flush=True,
    )
    print(
        f"lateness fired_at-due_at ms: p50 {figures['p50']:.0f} p99 {figures['p99']:.0f} "
        f"max {figures['max']:.0f}; event lateness_ms: p50 {figures['own_p50']:.0f} "
        f"p99 {figures['own_p99']:.0f} max {figures['own_max']:.0f}",
        flush=True,
    )
    return figures


def print_table(results: dict[int, dict[str, float]]) -> None:
    sizes = list(results)
    rows: list[tuple[str, str, str, Callable[[float], str], str | None]] = [
        ("ingest rate (clocks/s, insert only)", "ingest", "", lambda v: f"{v:,.0f}", None),
        (
            "restart-to-ready, first start (s)",
            "ready_first",
            "< 10",
            lambda v: f"{v:.2f}",
            "ready_s",
        ),
        ("restart-to-ready, restart (s)", "ready_restart", "< 10", lambda v: f"{v:.2f}", "ready_s"),
        ("peak RSS of sla_timer (MB)", "rss", "< 300", lambda v: f"{v:.0f}", "rss_mb"),
        ("lateness p50 (ms)", "p50", "", lambda v: f"{v:.0f}", None),
        ("lateness p99 (ms)", "p99", "< 1000", lambda v: f"{v:.0f}", "p99_ms"),
        ("lateness max (ms)", "max", "", lambda v: f"{v:.0f}", None),
        ("event lateness_ms p50/p99/max", "", "", str, None),
        ("all 2,000 breaches arrived (s after due)", "all_s", "", lambda v: f"{v:.2f}", None),
    ]
    width = 42
    print(f"\n{'figure':{width}s}" + "".join(f"{n:>14,}" for n in sizes) + f"{'target @1M':>13s}")
    verdicts = []
    for label, key, target, fmt, tkey in rows:
        if label.startswith("event lateness_ms"):
            cells = [
                f"{r['own_p50']:.0f}/{r['own_p99']:.0f}/{r['own_max']:.0f}"
                for r in results.values()
            ]
        else:
            cells = [fmt(r[key]) for r in results.values()]
        print(f"{label:{width}s}" + "".join(f"{c:>14s}" for c in cells) + f"{target:>13s}")
        if tkey and TARGET_N in results:
            value = results[TARGET_N][key]
            verdicts.append(f"{label}: {fmt(value)} {'MET' if value < TARGETS[tkey] else 'MISSED'}")
    if verdicts:
        print(f"\ntargets at {TARGET_N:,} clocks:")
        for line in verdicts:
            print(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--clocks", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--batch", type=int, default=10_000, help="rows per insert")
    parser.add_argument("--batch-due", type=int, default=2_000, help="clocks due together")
    parser.add_argument("--fire-in", type=float, default=5.0, help="s after the restart")
    parser.add_argument("--settle", type=float, default=5.0, help="s run after first ready")
    parser.add_argument("--ready-timeout", type=float, default=120.0)
    parser.add_argument("--fire-timeout", type=float, default=120.0)
    args = parser.parse_args()
    started = time.monotonic()
    results = {n: run_size(n, args) for n in args.clocks}
    print_table(results)
    print(f"\ntotal bench time: {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
