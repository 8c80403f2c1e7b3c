"""The ceiling of bench/intake_throughput.py: intake's broker work and nothing else.

A minimal pika SelectConnection loop, run as a process of its own as intake is:
consume `<prefix>intake.inbound` (prefetch as intake's), publish for each delivery the
events intake publishes for that input (precomputed by bench.intake_load, looked up by
message id: the same bodies, ~1.4 KiB, and properties) to `<prefix>support.events` with
async publisher confirms, and ack the inputs whose outputs are all confirmed with one
multiple ack per confirm. No parsing, no validation, no logging: what is left is the
broker work, so intake's rate divided by this one is the share of the ceiling it gets.

Run by the bench: python -m bench.intake_baseline URL PREFIX OUTPUTS_FILE PREFETCH
"""

from __future__ import annotations

import collections
import json
import sys
from pathlib import Path
from typing import Any

import pika
import pika.spec

from services.upstream import pika_parameters


class Baseline:
    def __init__(self, url: str, prefix: str, outputs: dict[str, list[Any]], prefetch: int):
        self.prefix, self.outputs, self.prefetch = prefix, outputs, prefetch
        self.exchange = f"{prefix}support.events"
        self.seq = 0  # publish sequence number on the out channel (its delivery tags)
        # (last publish seq of an input, its delivery tag), in delivery order
        self.waiting: collections.deque[tuple[int, int]] = collections.deque()
        self.confirmed = 0  # every publish seq up to here is confirmed
        self.early: set[int] = set()  # seqs confirmed singly, ahead of `confirmed`
        self.inbound: Any = None
        self.out: Any = None
        self.conn = pika.SelectConnection(
            pika_parameters(url),
            on_open_callback=lambda c: c.channel(on_open_callback=self._on_inbound),
            on_close_callback=lambda c, _reason: c.ioloop.stop(),
        )

    def _on_inbound(self, channel: Any) -> None:
        self.inbound = channel
        self.conn.channel(on_open_callback=self._on_out)

    def _on_out(self, channel: Any) -> None:
        # NOTE: publishing on a channel of its own keeps a flow-controlled publish from
        # stalling the deliveries; both channels share the connection, as pika allows.
        self.out = channel
        channel.confirm_delivery(self._on_confirm)
        self.inbound.basic_qos(prefetch_count=self.prefetch, callback=self._consume)

    def _consume(self, _frame: Any) -> None:
        self.inbound.basic_consume(f"{self.prefix}intake.inbound", self._on_message)

    def _on_message(self, _ch: Any, method: Any, props: Any, _body: bytes) -> None:
        for key, body, message_id, correlation_id, headers in self.outputs[props.message_id]:
            self.out.basic_publish(
                self.exchange,
                key,
                body,
                pika.BasicProperties(
                    content_type="application/cloudevents+json",
                    delivery_mode=2,
                    message_id=message_id,
                    correlation_id=correlation_id,
                    headers=headers,
                ),
            )
            self.seq += 1
        self.waiting.append((self.seq, method.delivery_tag))

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        if not isinstance(method, pika.spec.Basic.Ack):
            raise RuntimeError(f"the broker refused publish {method.delivery_tag}")
        if method.multiple:
            self.confirmed = max(self.confirmed, method.delivery_tag)
        else:
            self.early.add(method.delivery_tag)
        while self.confirmed + 1 in self.early:
            self.early.discard(self.confirmed + 1)
            self.confirmed += 1
        last_tag = None
        while self.waiting and self.waiting[0][0] <= self.confirmed:
            last_tag = self.waiting.popleft()[1]
        if last_tag is not None:  # every input up to this one has all its outputs confirmed
            self.inbound.basic_ack(last_tag, multiple=True)


def load_outputs(path: Path) -> dict[str, list[Any]]:
    outputs = {}
    with path.open() as f:
        for line in f:
            row = json.loads(line)
            outputs[row["id"]] = [(k, b.encode(), m, c, h) for k, b, m, c, h in row["out"]]
    return outputs


def main() -> None:
    url, prefix, path, prefetch = sys.argv[1:5]
    baseline = Baseline(url, prefix, load_outputs(Path(path)), int(prefetch))
    baseline.conn.ioloop.start()  # until the bench stops this process (SIGTERM)


if __name__ == "__main__":
    main()
