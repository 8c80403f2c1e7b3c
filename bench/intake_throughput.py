"""Intake throughput against the local RabbitMQ, next to a raw pika baseline.

Both pipelines get the same broker-side work: their own AMQP_PREFIX with the full
topology declared (quorum queues, the event-log stream), the same N pre-loaded
chat and email messages, and they publish their output to support.events with
publisher confirms before acking the input.

  baseline: a minimal pika SelectConnection loop: consume -> json + pydantic
            validate -> publish with async confirms -> ack on confirm.
  intake:   the real intake service (runtime + normalization) in this process.

Run: .venv/bin/python bench/intake_throughput.py [--messages 20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

import pika

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support helpers

from schemas.inbound import ChatRequest, EmailForm
from services.intake.main import IntakeSettings, bootstrap
from services.runtime.app import ServiceRunner, declare_topology
from services.runtime.logging import configure_logging
from services.runtime.metrics import RuntimeMetrics
from services.upstream import UpstreamPublisher, pika_parameters
from tests.support.broker import delete_topology, new_prefix

ROOT = Path(__file__).resolve().parent.parent
CHAT = json.loads((ROOT / "examples/inbound/chat.json").read_text())
EMAIL = json.loads((ROOT / "examples/inbound/email.json").read_text())


def payloads(n: int) -> list[tuple[str, bytes]]:
    out = []
    for i in range(n):
        if i % 2:
            out.append(("chat", json.dumps(CHAT | {"conversation_id": f"c-{i}"}).encode()))
        else:
            body = EMAIL | {"message_id": f"<m{i}@mail.acme.example>"}
            out.append(("email", json.dumps(body).encode()))
    return out


def preload(url: str, prefix: str, items: list[tuple[str, bytes]]) -> None:
    settings = IntakeSettings(AMQP_URL=url, AMQP_PREFIX=prefix)
    declare_topology(settings)
    with UpstreamPublisher(url, prefix, confirm=False) as upstream:  # fast loading
        for channel, body in items:
            upstream.publish(channel, body, "application/json")


def run_baseline(url: str, prefix: str, n: int, prefetch: int) -> float:
    models = {"inbound.chat": ChatRequest, "inbound.email": EmailForm}
    state = {"seq": 0, "acked": 0, "t0": 0.0, "t1": 0.0}
    pending: dict[int, int] = {}
    chans: dict[str, pika.channel.Channel] = {}

    def on_message(ch, method, props, body):  # type: ignore[no-untyped-def]
        if not state["t0"]:
            state["t0"] = time.perf_counter()
        models[method.routing_key].model_validate(json.loads(body))
        chans["out"].basic_publish(
            f"{prefix}support.events",
            "ticket.opened.standard",
            body,
            pika.BasicProperties(delivery_mode=2, message_id=props.message_id),
        )
        state["seq"] += 1
        pending[state["seq"]] = method.delivery_tag

    def on_confirm(frame):  # type: ignore[no-untyped-def]
        tag, multiple = frame.method.delivery_tag, frame.method.multiple
        done = [s for s in pending if s <= tag] if multiple else [tag]
        for seq in done:
            chans["in"].basic_ack(pending.pop(seq))
        state["acked"] += len(done)
        if state["acked"] >= n:
            state["t1"] = time.perf_counter()
            conn.close()

    def on_out(ch):  # type: ignore[no-untyped-def]
        chans["out"] = ch
        ch.confirm_delivery(on_confirm)
        chans["in"].basic_qos(
            prefetch_count=prefetch,
            callback=lambda _: chans["in"].basic_consume(f"{prefix}intake.inbound", on_message),
        )

    def on_in(ch):  # type: ignore[no-untyped-def]
        chans["in"] = ch
        conn.channel(on_open_callback=on_out)

    conn = pika.SelectConnection(
        pika_parameters(url),
        on_open_callback=lambda c: c.channel(on_open_callback=on_in),
        on_close_callback=lambda c, _reason: c.ioloop.stop(),
    )
    conn.ioloop.start()
    return n / (state["t1"] - state["t0"])


def run_intake(url: str, prefix: str, n: int, prefetch: int) -> float:
    settings = IntakeSettings(
        AMQP_URL=url,
        AMQP_PREFIX=prefix,
        ACCOUNTS_FILE=ROOT / "examples/accounts.yaml",
        PREFETCH_COUNT=prefetch,
    )
    metrics = RuntimeMetrics.create()
    runner = ServiceRunner(bootstrap(settings), settings, metrics)
    thread = threading.Thread(target=runner.run, daemon=True)

    consumed = metrics.consumed.labels("intake")
    acked = metrics.outcomes.labels("intake", "acked")

    thread.start()
    while consumed._value.get() == 0:  # a cheap read: this thread shares the GIL
        time.sleep(0.0005)
    t0 = time.perf_counter()
    while acked._value.get() < n:
        time.sleep(0.02)
    t1 = time.perf_counter()
    runner.stop.set()
    thread.join(10)
    return n / (t1 - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--prefetch", type=int, default=256)
    parser.add_argument("--log-level", default="warning", help="intake's LOG_LEVEL")
    args = parser.parse_args()
    configure_logging("json", args.log_level)
    items = payloads(args.messages)
    results: dict[str, list[float]] = {"baseline": [], "intake": []}
    for run in range(1, args.runs + 1):
        for name, fn in (("baseline", run_baseline), ("intake", run_intake)):
            prefix = new_prefix()
            try:
                preload(args.url, prefix, items)
                rate = fn(args.url, prefix, args.messages, args.prefetch)
            finally:
                delete_topology(args.url, prefix, [])
            results[name].append(rate)
            print(f"run {run} {name:8s} {rate:9.0f} msg/s", flush=True)
    base, intake = (statistics.median(results[k]) for k in ("baseline", "intake"))
    print(f"\nmessages per run: {args.messages} (half chat, half email JSON); runs: {args.runs}")
    print(f"baseline (raw pika, async confirms) median: {base:9.0f} msg/s")
    print(f"intake (runtime + normalization)    median: {intake:9.0f} msg/s")
    print(f"intake / baseline: {intake / base:.0%}  (target >= 50%)")


if __name__ == "__main__":
    main()
