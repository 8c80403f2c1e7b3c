"""End-to-end page latency: upstream publish -> intake -> notifier -> paging webhook.

The three services run as separate OS processes (`premium-support run intake|sla-timer|
notifier`) against the local RabbitMQ, each run on a fresh AMQP_PREFIX with its own
stores (SQLite files, or a fresh PostgreSQL database) and an on-call file whose level-1
person is paged at a PagerDuty-like endpoint this bench serves on 127.0.0.1. Standard
chats (~500 characters of ordinary prose) are offered at a fixed rate, with business-
critical probes mixed in: JSON-form emails from the Super Admin, marked business-critical,
about a company-wide login outage. Measured:

  - page latency of each probe: arrival at the paging endpoint minus its publish time
    (p50 / p99 / max; probes with no page `--grace` s after the load are lost);
  - queue depths every second: every service queue the tree under test declares
    (intake.inbound, sla_timer.events, notifier.events, any other notifier.* queue),
    their dead letters and support.unrouted; ready+unacked from the management API, or
    ready only from passive declares where it does not answer. Max, at the end of the
    load, and whether they stayed bounded: the service queues together hold < 2 s of
    offered chats at the end and did not grow over the last 20 s (fitted slope < 5 %
    of the offered rate);
  - CPU seconds of each service process (with children), of the broker, of this bench,
    and of the whole machine, as a share of one core over the load; the achieved
    publish rate (async publisher confirms, paced in 10 ms slices).

Targets: 500 chats/s sustained for 60 s with queues bounded and p99 page latency < 1 s,
on SQLite and on PostgreSQL; a burst of 5,000 chats with every probe paged in < 2 s.

Run:
  .venv/bin/python bench/e2e_latency.py --rate 500 --duration 60 [--store postgresql]
  .venv/bin/python bench/e2e_latency.py --burst 5000
  .venv/bin/python bench/e2e_latency.py --find-max [--step-duration 30]
  (or `make bench-e2e BENCH_ARGS="--burst 5000"`)
  options: --probe-rate 2 --grace 30 --runs K --json --log-level info --keep-logs DIR
           --service-root DIR (run the services of another checkout, e.g. a git worktree)
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import e2e_load as load
from bench import e2e_support as sup

SERVICES = ("intake", "sla-timer", "notifier")
FIND_MAX_RATES = (100, 200, 300, 500, 700, 1000, 1400, 2000, 3000)


# -- one run -------------------------------------------------------------------------------
def cpu_snapshot(services: list[sup.Service], broker: int | None) -> dict[str, float]:
    snap = {s.name: s.cpu() for s in services}
    own = os.times()
    snap["bench"] = own.user + own.system
    snap["broker"] = sup.cpu_seconds(broker) if broker else math.nan
    busy, total = sup.machine_busy()
    snap["machine"] = busy / sup.CLK_TCK
    snap["_wall"] = total / sup.CLK_TCK / (os.cpu_count() or 1)
    return snap


def run_once(args: argparse.Namespace, plan: load.Plan, label: str) -> dict[str, Any]:
    """One run on a fresh prefix, fresh stores and fresh service processes."""
    prefix = f"bench-e2e-{uuid.uuid4().hex[:8]}."
    root = Path(args.service_root).resolve()
    print(f"\n== {label}, {args.store}, AMQP_PREFIX={prefix}", flush=True)
    with ExitStack() as stack:  # unwinds in reverse: services, topology, stores, files
        workdir = Path(tempfile.mkdtemp(prefix="bench_e2e_"))
        stack.callback(shutil.rmtree, workdir, ignore_errors=True)
        if args.keep_logs:  # runs before the rmtree, after the services stopped
            keep = Path(args.keep_logs) / prefix.rstrip(".")
            stack.callback(shutil.copytree, workdir, keep, ignore=shutil.ignore_patterns("*.db*"))
        pager_url, pages = stack.enter_context(sup.paging_endpoint())
        env = dict(os.environ) | {
            "AMQP_URL": args.url,
            "AMQP_PREFIX": prefix,
            "LOG_LEVEL": args.log_level,
            "LOG_FORMAT": "json",
            "METRICS_PORT": "0",
            **sup.write_files(workdir, pager_url),
            **stack.enter_context(sup.stores(args.store, workdir)),
        }
        if args.policy:
            env["POLICY_FILE"] = str(Path(args.policy).resolve())
        if root != sup.ROOT:
            env["PYTHONPATH"] = str(root)
        topo = sup.Topology.of_tree(prefix, root, env)
        stack.callback(sup.delete_topology, args.url, topo, args.mgmt)
        declare = sup.cli(root, "topology", "declare")
        subprocess.run(declare, env=env, cwd=root, check=True, capture_output=True, timeout=60)
        services = [
            sup.Service(n, sup.cli(root, "run", n), env, root, workdir / f"{n}.log")
            for n in SERVICES
        ] + [  # competing consumers on intake.inbound
            sup.Service(
                f"intake-{i}",
                sup.cli(root, "run", "intake"),
                env,
                root,
                workdir / f"intake-{i}.log",
            )
            for i in range(2, args.intake_processes + 1)
        ]
        try:
            for service in services:
                stack.callback(service.stop)
                service.start()
            ready_s, idle = sup.wait_ready(args.url, topo, services)
            print(f"consumers on {', '.join(topo.queues)} after {ready_s:.1f} s", flush=True)
            for queue in idle:
                print(f"WARNING: nobody consumes {queue} after {ready_s:.0f} s; going on")
            return measure(args, plan, topo, services, pages, stack) | {"no_consumer": idle}
        except Exception:  # not on Ctrl-C: then just clean up
            for service in services:
                print(f"-- {service.name} log tail:\n{service.tail()}", file=sys.stderr)
            raise
    raise AssertionError("unreachable")


def measure(
    args: argparse.Namespace,
    plan: load.Plan,
    topo: sup.Topology,
    services: list[sup.Service],
    pages: sup.Pages,
    stack: ExitStack,
) -> dict[str, Any]:
    sampler = sup.DepthSampler(args.url, topo, args.mgmt)
    sampler.start()
    stack.callback(sampler.stop)
    publisher = load.Publisher(args.url, topo.prefix, plan, load.chat_texts(64, random.Random(7)))
    broker = sup.broker_pid()
    columns = [(q, max(8, len(q))) for q in topo.queues]
    print(f"queue depths ({sampler.source}), every {args.print_every:.0f} s:")
    print(f"{'t':>5} {'sent':>7} {'paged':>5} " + " ".join(f"{q:>{w}}" for q, w in columns), "dead")
    cpu0 = cpu_snapshot(services, broker)
    t_start = time.monotonic()
    publisher.start()
    stack.callback(publisher.abort)

    def watch(until: Any, limit_s: float) -> None:
        deadline, next_print = time.monotonic() + limit_s, time.monotonic() + args.print_every
        while not until() and time.monotonic() < deadline:
            time.sleep(0.1)
            for service in services:
                service.check_alive()
            if sampler.error:
                raise RuntimeError(f"depth sampler failed: {sampler.error!r}")
            if time.monotonic() >= next_print and sampler.samples:
                next_print += args.print_every
                t, d = sampler.samples[-1]
                cells = " ".join(f"{d.get(q, 0):>{w}}" for q, w in columns)
                dead = sum(v for k, v in d.items() if k.endswith(".dead"))
                head = f"{t - t_start:5.0f} {publisher.sent:>7} {len(pages.first):>5}"
                print(f"{head} {cells} {dead:>4}", flush=True)

    watch(publisher.finished.is_set, (plan[-1][0] if plan else 0.0) + 120)
    if publisher.error:
        raise RuntimeError(f"publisher failed: {publisher.error!r}")
    if not publisher.finished.is_set():
        publisher.abort()
        print("publisher did not finish in time: aborted", file=sys.stderr)
    load_end = publisher.t_last
    cpu1 = cpu_snapshot(services, broker)

    def drained() -> bool:
        recent = [d for t, d in sampler.samples if t > load_end + 0.5]
        empty = bool(recent) and sum(recent[-1].get(q, 0) for q in topo.queues) == 0
        return empty and set(publisher.probes) <= set(pages.first)

    watch(drained, args.grace)
    if not args.offered_rate:  # a burst: CPU until drained (or the grace ran out)
        cpu1 = cpu_snapshot(services, broker)
    time.sleep(1.2)  # one more depth sample
    res = summarise(args, topo, publisher, pages, sampler.samples, cpu0, cpu1)
    res["depth_source"] = sampler.source
    res["log_problems"] = {s.name: log_problems(s.log) for s in services}
    return res


def summarise(
    args: argparse.Namespace,
    topo: sup.Topology,
    pub: load.Publisher,
    pages: sup.Pages,
    samples: list[tuple[float, dict[str, int]]],
    cpu0: dict[str, float],
    cpu1: dict[str, float],
) -> dict[str, Any]:
    latencies = {t: pages.first[t] - sent for t, sent in pub.probes.items() if t in pages.first}
    ms = [v * 1000 for v in latencies.values()]
    load_end, load_s = pub.t_last, max(1e-9, pub.t_last - pub.t_first)
    total = [(t, float(sum(d.get(q, 0) for q in topo.queues))) for t, d in samples]
    at_end = [d for t, d in samples if t <= load_end + 0.5] or [samples[0][1]]
    growth = sup.slope([(t, y) for t, y in total if load_end - 20 <= t <= load_end + 0.5])
    drained_at = [t for t, y in total if t > load_end and y == 0]
    cpu = {k: cpu1[k] - cpu0[k] for k in cpu0 if not k.startswith("_")}
    wall = max(1e-9, cpu1["_wall"] - cpu0["_wall"])
    res: dict[str, Any] = {
        "chats_sent": pub.sent - len(pub.probes),
        "probes_sent": len(pub.probes),
        "pages_received": len(latencies),
        "lost_probes": [t for t in pub.probes if t not in pages.first],
        "page_ms": {"p50": sup.pct(ms, 50), "p99": sup.pct(ms, 99), "max": max(ms, default=0)},
        "probe_ms": [round(latencies[t] * 1000, 1) if t in latencies else None for t in pub.probes],
        "published_per_s": pub.sent / load_s,  # chats and probes
        "chats_per_s": (pub.sent - len(pub.probes)) / load_s,
        "offered_per_s": args.offered_rate,
        "confirms": {"acked": pub.acked, "nacked": pub.nacked, "missing": pub.outstanding},
        "max_publish_lag_s": pub.max_lag,
        "depth_max": {q: max((d.get(q, 0) for _, d in samples), default=0) for q in topo.queues},
        "depth_end": {q: at_end[-1].get(q, 0) for q in topo.queues},
        "growth_per_s": growth,
        "drain_s": (drained_at[0] - load_end) if drained_at else None,
        "dead_letters": sum(v for k, v in samples[-1][1].items() if k.endswith(".dead")),
        "unrouted": samples[-1][1].get("support.unrouted", 0),
        "duplicate_pages": pages.duplicates,
        "posts_by_path": dict(pages.posts),
        "cpu_s": cpu,
        "cpu_over_s": wall,
        "cpu_share": {k: v / wall for k, v in cpu.items()},
    }
    if args.offered_rate:  # sustained: end depth < 2 s of offered load, growth < 5 % of it
        end_total = sum(res["depth_end"].values())
        res["bounded"] = end_total < 2 * args.offered_rate and growth < 0.05 * args.offered_rate
    return res


def log_problems(log: Path) -> dict[str, int]:
    counts: dict[str, int] = collections.Counter()
    with log.open(errors="replace") as lines:
        for line in lines:
            found = re.search(r'"level":\s*"(warning|error|critical)"', line)
            if found:
                counts[found.group(1)] += 1
            elif line.startswith("Traceback"):
                counts["traceback"] += 1
    return dict(counts)


# -- reporting -----------------------------------------------------------------------------
def report(res: dict[str, Any], burst: bool) -> None:
    p = res["page_ms"]
    print(
        f"pages: {res['pages_received']}/{res['probes_sent']} probes paged; latency p50 "
        f"{p['p50']:.0f} ms, p99 {p['p99']:.0f} ms, max {p['max']:.0f} ms"
        + ("  (target: every probe < 2000 ms)" if burst else "  (target: p99 < 1000 ms)")
    )
    if burst:
        each = " ".join("lost" if v is None else f"{v:.0f}" for v in res["probe_ms"])
        print(f"  each probe in publish order (ms): {each}")
    for tid in res["lost_probes"]:
        print(f"  LOST: {tid} (no page within the grace period)")
    offered = f" of {res['offered_per_s']:.0f} offered" if res["offered_per_s"] else ""
    lag = "" if burst else f", at most {res['max_publish_lag_s']:.2f} s behind schedule"
    print(
        f"publish: {res['chats_sent']} chats + {res['probes_sent']} probes, "
        f"{res['chats_per_s']:.0f} chats/s{offered}{lag}; confirms {res['confirms']}"
    )
    drained = f"{res['drain_s']:.1f} s after the load" if res["drain_s"] is not None else "NOT"
    print(f"queues ({res['depth_source']}): max {res['depth_max']}")
    if not burst:
        print(f"  at the end of the load {res['depth_end']}, {res['growth_per_s']:+.1f} msg/s")
        print(f"  bounded: {'yes' if res['bounded'] else 'NO'}")
    print(f"  drained: {drained}")
    shares = ", ".join(f"{k} {v:.2f}" for k, v in res["cpu_share"].items())
    over = "the load" if not burst else "publish start to drained"
    print(
        f"CPU, cores busy over {over} ({res['cpu_over_s']:.1f} s): {shares} (of {os.cpu_count()})"
    )
    keys = ("no_consumer", "dead_letters", "unrouted", "duplicate_pages")
    extra = {k: res[k] for k in keys if res.get(k)}
    problems = {k: v for k, v in res["log_problems"].items() if v}
    if extra or problems:
        print(f"WARNING: {extra} log lines: {problems}")


def medians(results: list[dict[str, Any]]) -> dict[str, Any]:
    def med(get: Any) -> float:
        values = [v for v in (get(r) for r in results) if v is not None and not math.isnan(v)]
        return statistics.median(values) if values else math.nan

    out: dict[str, Any] = {
        f"page_{k}_ms": med(lambda r, k=k: r["page_ms"][k]) for k in ("p50", "p99", "max")
    }
    out["lost_probes"] = med(lambda r: len(r["lost_probes"]))
    out["chats_per_s"] = med(lambda r: r["chats_per_s"])
    out["depth_end_total"] = med(lambda r: sum(r["depth_end"].values()))
    out["depth_max_queue"] = med(lambda r: max(r["depth_max"].values()))
    out["drain_s"] = med(lambda r: r["drain_s"])
    for name in (*SERVICES, "broker", "bench"):
        out[f"cpu_share_{name}"] = med(lambda r, n=name: r["cpu_share"][n])
    if all("bounded" in r for r in results):
        out["bounded_runs"] = f"{sum(r['bounded'] for r in results)}/{len(results)}"
    return out


def find_max(args: argparse.Namespace) -> dict[str, Any]:
    steps, best = [], None
    for rate in args.rates:
        args.offered_rate = rate
        plan = load.sustained_plan(rate, args.step_duration, args.probe_rate)
        res = run_once(
            args, plan, f"find-max step: {rate:.0f} chats/s for {args.step_duration:.0f} s"
        )
        report(res, False)
        steps.append({"rate": rate} | res)
        if not res["bounded"]:
            break
        best = rate
    print(f"\nhighest bounded rate: {f'{best:.0f}' if best else 'none'} chats/s")
    return {"highest_bounded": best, "steps": steps}


def interrupted(signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--mgmt", default="http://127.0.0.1:15672", help="management API")
    parser.add_argument("--store", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--rate", type=float, default=500, help="chats per second")
    parser.add_argument("--duration", type=float, default=60, help="seconds of load")
    parser.add_argument("--probe-rate", type=float, default=2, help="probes per second")
    parser.add_argument("--burst", type=int, help="publish N chats as fast as possible")
    parser.add_argument("--burst-probes", type=int, default=10)
    parser.add_argument(
        "--intake-processes", type=int, default=1, help="intake processes on one queue"
    )
    parser.add_argument("--find-max", action="store_true", help="step the rate up")
    parser.add_argument("--step-duration", type=float, default=30)
    parser.add_argument("--rates", type=float, nargs="+", default=FIND_MAX_RATES)
    parser.add_argument("--grace", type=float, default=30, help="s after the load for pages")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="a JSON summary at the end")
    parser.add_argument("--log-level", default="info", help="the services' LOG_LEVEL")
    parser.add_argument("--policy", help="POLICY_FILE (default: the packaged policy)")
    parser.add_argument("--print-every", type=float, default=5)
    parser.add_argument("--keep-logs", help="copy the services' logs and files to this dir")
    parser.add_argument("--service-root", default=str(sup.ROOT), help="checkout to run")
    args = parser.parse_args()
    for url in (args.url, args.mgmt):
        if urlparse(url).hostname not in sup.LOCAL_HOSTS:
            parser.error(f"{url}: this bench only talks to 127.0.0.1")
    if not sup.management_answers(args.mgmt, args.url):
        print(f"management API at {args.mgmt} does not answer: passive declares instead")
        args.mgmt = None
    for signum in (signal.SIGINT, signal.SIGTERM):  # clean up on either, even where the
        signal.signal(signum, interrupted)  # shell started us with SIGINT ignored

    results: list[dict[str, Any]] = []
    for run in range(1, args.runs + 1):
        if args.find_max:
            results.append(find_max(args))
            continue
        if args.burst:
            args.offered_rate = None
            plan, label = load.burst_plan(args.burst, args.burst_probes), f"burst of {args.burst}"
        else:
            args.offered_rate = args.rate
            plan = load.sustained_plan(args.rate, args.duration, args.probe_rate)
            label = f"{args.rate:.0f} chats/s for {args.duration:.0f} s"
        res = run_once(args, plan, f"run {run}/{args.runs}: {label}")
        report(res, bool(args.burst))
        results.append(res)
    summary: dict[str, Any] = {"store": args.store, "runs": results}
    if args.find_max:
        best = [r["highest_bounded"] or 0 for r in results]
        summary["median_highest_bounded"] = statistics.median(best)
        print(f"\nmedian highest bounded rate over {len(best)} run(s): {statistics.median(best)}")
    elif args.runs > 1:
        summary["median"] = medians(results)
        print(f"\nmedians over {args.runs} runs:")
        for key, value in summary["median"].items():
            print(f"  {key:20s} {value:10.2f}" if isinstance(value, float) else f"  {key}: {value}")
    if args.json:
        print(json.dumps(summary, default=str))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt as exc:
        print(f"interrupted ({exc or 'Ctrl-C'}): services stopped, queues and stores removed")
        sys.exit(130)
