"""The benchmarks at tiny sizes, end to end against the real broker (and PostgreSQL), so
that they cannot rot: each runs as a user runs it and must print its summary with every
message counted and sane figures. The figures themselves are not judged here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import ROOT
from tests.integration.conftest import PG_URL


def run_bench(script: str, *args: str, amqp_url: str, timeout: float = 240) -> Any:
    done = subprocess.run(
        [sys.executable, f"bench/{script}", "--url", amqp_url, *args],
        cwd=ROOT,
        env=os.environ | {"DATABASE_URL": PG_URL},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("summary-json: ")]
    assert len(lines) == 1, done.stdout[-3000:]
    return json.loads(lines[0].removeprefix("summary-json: "))


def test_intake_throughput_counts_every_event_of_every_pipeline(amqp_url: str) -> None:
    summary = run_bench(
        "intake_throughput.py",
        "--messages",
        "300",
        "--rounds",
        "1",
        "--processes",
        "1",
        "2",
        amqp_url=amqp_url,
    )
    pipelines = summary["pipelines"]
    assert set(pipelines) == {"baseline", "intake-info", "intake-warning", "intake-info x2"}
    for name, figures in pipelines.items():
        assert figures["median_rate"] > 0, name
        assert figures["missing"] == figures["unexpected"] == figures["dead"] == 0, name
        assert figures["duplicates"] == 0, name  # no process died: no redelivery
        assert figures["multi"] > 0, name  # email replies: tickets with two events
    assert all(s > 0 for s in pipelines["intake-info"]["shares"])


@pytest.mark.parametrize("store", ["sqlite", "postgresql"])
def test_sla_timer_scale_measures_ingest_restart_and_lateness(amqp_url: str, store: str) -> None:
    summary = run_bench(
        "sla_timer_scale.py",
        "--clocks",
        "3000",
        "--ingest",
        "200",
        "--due",
        "100",
        "--fire-in",
        "4",
        "--store",
        store,
        amqp_url=amqp_url,
    )
    (figures,) = summary["sizes"].values()
    assert figures["arrived"] == 100  # every armed clock breached, and arrived
    assert figures["other"] == 0  # and no background clock fired
    assert figures["ingest"] > 0 and figures["publish"] > 0
    assert 0 < figures["ready_first"] < 60 and 0 < figures["ready_restart"] < 60
    assert 0 < figures["rss"] < 2000
    assert 0 <= figures["p50"] <= figures["p99"] <= figures["max"] < 60_000
