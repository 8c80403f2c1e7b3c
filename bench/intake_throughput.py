"""Intake throughput against the local RabbitMQ, next to the ceiling of its broker work.

Every pipeline runs as real processes on a prefix of its own with the full topology
declared, so its events fan out from `support.events` to the event-log stream and the
service queues as in production, and gets the same N pre-loaded messages
(bench.intake_load: chat, email form and phone, >= 500 characters of prose each):

  baseline        python -m bench.intake_baseline: consume, publish the event intake
                  would publish for that input (precomputed, same body and properties),
                  async confirms, multiple acks after the confirm: the ceiling.
  intake-info     `premium-support run intake` at LOG_LEVEL=info (the default).
  intake-warning  the same at LOG_LEVEL=warning.
  intake-info xN  N intake processes competing on intake.inbound (--processes 1 2 4).

Rates are read the same way for all: the processes start on an empty queue, are
stopped (SIGSTOP) once all consume, the load is published with confirms, then they go
on together (SIGCONT); a consumer on a queue of its own bound to support.events with
`#` notes each event's arrival, and the rate is (N - 1) / (arrival of the N-th distinct
event id - arrival of the first). Rounds interleave the pipelines; medians and min-max
are printed, and each round's intake rate is divided by the baseline of that round.

Run: .venv/bin/python bench/intake_throughput.py [--messages 20000] [--rounds 3]
     [--processes 1 2 4]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # bench, tests.support

from bench import intake_load
from bench.downstream import (
    Arrival,
    Arrivals,
    ConfirmedPublisher,
    message_count,
    spread,
    wait_consumers,
)
from bench.e2e_support import Service, broker_pid, cli, cpu_seconds
from services.intake.main import IntakeSettings
from services.runtime.app import declare_topology
from services.runtime.config import RuntimeSettings
from tests.support.broker import delete_topology, new_prefix

ROOT = intake_load.ROOT
TARGET_SHARE = 0.7  # one intake at INFO / the ceiling (issue 11)
TARGET_SCALE = 1.2  # two intake processes / one
ORDERING = (
    "docs/contracts.md promises no order between messages (sla_timer parks an update "
    "that overtakes its ticket.opened), so out-of-order tickets are reported, not a fault"
)


@dataclass(frozen=True)
class Pipeline:
    name: str
    processes: int = 1
    log_level: str | None = None  # None: the baseline

    @property
    def is_baseline(self) -> bool:
        return self.log_level is None


@dataclass
class Result:
    rate: float = float("nan")
    cpu_us: float = float("nan")  # CPU of the pipeline's processes per message
    broker_us: float = float("nan")  # CPU of the whole broker (shared) per message
    counter_s: float = float("nan")  # CPU of this process (the counter) per wall second
    arrived: int = 0
    distinct: int = 0
    missing: int = 0
    unexpected: int = 0
    multi: int = 0  # tickets with more than one event
    out_of_order: int = 0  # of those: events arrived in another order than their inputs
    dead: int = 0

    @property
    def cores(self) -> float:
        """Cores kept busy: the pipeline, the broker and the counter (of this machine's
        os.cpu_count()); near it, the machine, not the pipeline, sets the rate."""
        return self.rate * (self.cpu_us + self.broker_us) / 1e6 + self.counter_s


@dataclass
class Load:
    messages: list[intake_load.Message]
    items: list[Any]
    expected: set[str]
    outputs_file: Path


def prepare(count: int, workdir: Path) -> Load:
    messages = intake_load.build(count, "bench")
    outputs = intake_load.intake_outputs(messages, "bench.")
    path = workdir / "outputs.jsonl"
    intake_load.write_outputs(path, outputs)
    expected = {o.message_id for outs in outputs.values() for o in outs}
    sizes_in = [len(m.body) for m in messages]
    sizes_out = [len(o.body) for outs in outputs.values() for o in outs]
    kinds: dict[str, int] = defaultdict(int)
    for m in messages:
        kinds[m.routing_key.removeprefix("inbound.")] += 1
    print(
        f"load: {count:,} messages ({', '.join(f'{k} {v:,}' for k, v in kinds.items())}), "
        f"mean {statistics.mean(sizes_in):.0f} bytes in; {len(expected):,} events, mean "
        f"{statistics.mean(sizes_out):.0f} bytes out",
        flush=True,
    )
    return Load(messages, intake_load.inbound_items(messages), expected, path)


def start(
    p: Pipeline, i: int, prefix: str, args: argparse.Namespace, load: Load, workdir: Path
) -> Service:
    env = os.environ | {"AMQP_URL": args.url, "AMQP_PREFIX": prefix}
    if p.is_baseline:
        cmd = [sys.executable, "-m", "bench.intake_baseline", args.url, prefix]
        cmd += [str(load.outputs_file), str(args.prefetch)]
    else:
        cmd = cli(ROOT, "run", "intake")
        env |= {
            "ACCOUNTS_FILE": str(intake_load.ACCOUNTS),
            "LOG_LEVEL": str(p.log_level),
            "METRICS_PORT": "0",
            "PREFETCH_COUNT": str(args.prefetch),
        }
    service = Service(p.name, cmd, env, ROOT, workdir / f"{p.name}-{i}.log".replace(" ", ""))
    service.start()
    return service


def run_once(p: Pipeline, load: Load, args: argparse.Namespace) -> Result:
    prefix = new_prefix()
    workdir = Path(tempfile.mkdtemp(prefix="bench_intake_"))
    settings = RuntimeSettings(AMQP_URL=args.url, AMQP_PREFIX=prefix)
    declare_topology(settings)
    counter = Arrivals(args.url, f"{prefix}support.events", ["#"], len(load.expected))
    services: list[Service] = []
    try:
        counter.start_and_wait()
        services = [start(p, i, prefix, args, load, workdir) for i in range(p.processes)]

        def alive() -> None:
            for s in services:
                s.check_alive()

        wait_consumers(args.url, f"{prefix}intake.inbound", p.processes, 60, alive)
        # NOTE: stopped, the processes take no message while the load is published, and
        # all go on at the same instant: no process gets a head start, no publisher
        # competes with them for the CPU during the measurement.
        for s in services:
            os.kill(s.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
        ConfirmedPublisher(args.url, f"{prefix}support.inbound", load.items).run()
        broker = broker_pid()  # None when several RabbitMQ nodes run here
        cpu0 = sum(s.cpu() for s in services)
        broker0 = cpu_seconds(broker) if broker else math.nan
        own0, wall0 = time.process_time(), time.monotonic()
        for s in services:
            os.kill(s.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        finished = counter.done.wait(60 + len(load.messages) / 200)
        cpu1 = sum(s.cpu() for s in services)
        broker1 = cpu_seconds(broker) if broker else math.nan
        own1, wall1 = time.process_time(), time.monotonic()
        time.sleep(args.settle)  # a late duplicate still counts
        alive()
        result = judge(counter.records, load, finished, counter)
        result.cpu_us = (cpu1 - cpu0) / len(load.messages) * 1e6
        result.broker_us = (broker1 - broker0) / len(load.messages) * 1e6
        # NOTE: near 1.0 the counter itself would be what limits the rate it reads.
        result.counter_s = (own1 - own0) / (wall1 - wall0)
        result.dead = message_count(args.url, f"{prefix}intake.inbound.dead")
        return result
    finally:
        for s in services:
            if s.proc is not None and s.proc.poll() is None:
                os.kill(s.proc.pid, signal.SIGCONT)
            s.stop()
        counter.stop()
        delete_topology(args.url, prefix, [])
        shutil.rmtree(workdir, ignore_errors=True)


def judge(records: list[Arrival], load: Load, finished: bool, counter: Arrivals) -> Result:
    """Counts and ordering from the events as they arrived (their bodies, not headers)."""
    result = Result(arrived=len(records))
    seen: set[str] = set()
    per_ticket: dict[str, list[int]] = defaultdict(list)
    for record in records:
        event = json.loads(record.body)
        if event["id"] != record.message_id:
            raise RuntimeError(f"message id {record.message_id} carries event {event['id']}")
        if event["id"] in seen:
            continue
        seen.add(event["id"])
        per_ticket[event["subject"]].append(intake_load.seq_of(event["correlationid"]))
    result.distinct = len(seen)
    result.missing = len(load.expected - seen)
    result.unexpected = len(seen - load.expected)
    multi = [seqs for seqs in per_ticket.values() if len(seqs) > 1]
    result.multi = len(multi)
    result.out_of_order = sum(seqs != sorted(seqs) for seqs in multi)
    if finished and counter.nth_at > counter.first_at:
        result.rate = (len(load.expected) - 1) / (counter.nth_at - counter.first_at)
    return result


def pipelines(processes: list[int]) -> list[Pipeline]:
    out = [Pipeline("baseline"), Pipeline("intake-info", 1, "info")]
    out.append(Pipeline("intake-warning", 1, "warning"))
    out += [Pipeline(f"intake-info x{n}", n, "info") for n in processes if n != 1]
    return out


def report(results: dict[str, list[Result]], args: argparse.Namespace) -> dict[str, Any]:
    base = results["baseline"]
    one = results["intake-info"]
    summary: dict[str, Any] = {"messages": args.messages, "rounds": args.rounds, "pipelines": {}}
    print(f"\n{args.messages:,} messages per run, {args.rounds} rounds; median (min-max)")
    print(
        f"{'pipeline':18s}{'msg/s':>24s}{'share of ceiling':>20s}"
        f"{'CPU us/msg':>12s}{'broker':>8s}{'cores':>7s}  target"
    )
    for name, rs in results.items():
        rates = [r.rate for r in rs]
        shares = [r.rate / b.rate for r, b in zip(rs, base, strict=True)]
        target = ""
        if name == "intake-info":
            target = f"share >= {TARGET_SHARE}"
        elif name.startswith("intake-info x"):
            scale = [r.rate / o.rate for r, o in zip(rs, one, strict=True)]
            target = f"x{name.rsplit('x', 1)[1]}/x1 {spread(scale, '.2f')}"
            if name == "intake-info x2":
                target += f" (target >= {TARGET_SCALE})"
        cpu = statistics.median(r.cpu_us for r in rs)
        measured = [r.broker_us for r in rs if not math.isnan(r.broker_us)]
        broker = statistics.median(measured) if measured else math.nan
        cores = statistics.median(r.cores for r in rs)
        print(
            f"{name:18s}{spread(rates):>24s}{spread(shares, '.2f'):>20s}"
            f"{cpu:>12.0f}{broker:>8.0f}{cores:>7.2f}  {target}"
        )
        summary["pipelines"][name] = {
            "rates": rates,
            "shares": shares,
            "median_rate": statistics.median(rates),
            "cores": [r.cores for r in rs],
            "missing": sum(r.missing for r in rs),
            "unexpected": sum(r.unexpected for r in rs),
            "duplicates": sum(r.arrived - r.distinct for r in rs),
            "dead": sum(r.dead for r in rs),
            "out_of_order": sum(r.out_of_order for r in rs),
            "counter_busy": max(r.counter_s for r in rs),
            "multi": sum(r.multi for r in rs),
        }
    print("\nevents downstream, all rounds (distinct ids vs the events expected):")
    for name, s in summary["pipelines"].items():
        print(
            f"  {name:18s} duplicates {s['duplicates']}, missing {s['missing']}, "
            f"unexpected {s['unexpected']}, dead-lettered {s['dead']}; tickets with >1 "
            f"event {s['multi']}, out of input order {s['out_of_order']}"
        )
    busy = max(s["counter_busy"] for s in summary["pipelines"].values())
    print(
        "CPU us/msg: the pipeline's processes; broker: the whole RabbitMQ node, which "
        "also serves whatever else runs on this machine; cores: the pipeline, the "
        f"broker and the counter together, of {os.cpu_count()}; the counter was busy at "
        f"most {busy:.0%} of a core"
    )
    print(f"ordering: {ORDERING}")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--url", default=os.environ.get("AMQP_URL", "amqp://guest:guest@127.0.0.1:5672//")
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--processes", type=int, nargs="+", default=[1])
    default_prefetch = IntakeSettings.model_fields["prefetch"].default
    parser.add_argument("--prefetch", type=int, default=default_prefetch, help="both pipelines")
    parser.add_argument("--settle", type=float, default=0.5, help="s to wait for late events")
    args = parser.parse_args()
    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="bench_intake_load_"))
    try:
        load = prepare(args.messages, workdir)
        results: dict[str, list[Result]] = defaultdict(list)
        for round_no in range(1, args.rounds + 1):
            for p in pipelines(args.processes):
                result = run_once(p, load, args)
                results[p.name].append(result)
                print(
                    f"round {round_no} {p.name:18s} {result.rate:9,.0f} msg/s  "
                    f"CPU {result.cpu_us:5.0f} us/msg (broker {result.broker_us:4.0f}, "
                    f"counter busy {result.counter_s:.0%})  "
                    f"missing {result.missing}",
                    flush=True,
                )
        summary = report(results, args)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"total bench time: {time.monotonic() - started:.0f} s")
    print("summary-json: " + json.dumps(summary))


if __name__ == "__main__":
    main()
