"""`premium-support run all` as a process against the real broker, and the signals an
orchestrator or an impatient person sends it: the first starts a graceful stop, a second
one (during it) ends the process at once, non-zero, however fast they come."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.integration.conftest import ACCOUNTS, wait_for
from tests.support.sinks import free_port

ONCALL = ROOT / "examples" / "demo" / "oncall.yaml"  # console only: nothing leaves the host
PROMPT_S = 5.0  # "at once": well under a graceful stop's worst case (30 s per worker)


class RunAll:
    def __init__(self, amqp_url: str, prefix: str, tmp: Path) -> None:
        self.port = free_port()
        env = os.environ | {
            "AMQP_URL": amqp_url,
            "AMQP_PREFIX": prefix,
            "ACCOUNTS_FILE": str(ACCOUNTS),
            "ONCALL_FILE": str(ONCALL),
            "SLA_STORE_URL": str(tmp / "clocks.db"),
            "NOTIFIER_STORE_URL": str(tmp / "notifier.db"),
            "METRICS_PORT": str(self.port),
            "METRICS_HOST": "127.0.0.1",
            "LOG_LEVEL": "info",
            "LOG_FORMAT": "console",
        }
        self.log = tmp / "run-all.log"
        with self.log.open("wb") as out:  # a file, never a pipe nobody reads
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.cli", "run", "all"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def consuming(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"run all exited with {self.proc.returncode}:\n{self.output()}")
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def exit_code_within(self, seconds: float) -> int:
        try:
            return self.proc.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {seconds} s later:\n{self.output()}") from None


@pytest.fixture
def run_all(amqp_url: str, prefix: str, tmp_path: Path) -> Iterator[RunAll]:
    process = RunAll(amqp_url, prefix, tmp_path)
    try:
        wait_for(process.consuming, timeout=60)
        yield process
    finally:
        if process.proc.poll() is None:
            process.proc.kill()
            process.proc.wait()


def test_a_burst_of_sigterms_stops_it_promptly(run_all: RunAll) -> None:
    """NOTE: the kernel merges a signal sent while the same one is pending, and Python
    runs its handler once per C-level delivery, so a burst is seen as one signal or as
    several: a graceful stop (0) or an immediate one (143); a hang is neither."""
    for _ in range(20):
        os.kill(run_all.proc.pid, signal.SIGTERM)
    code = run_all.exit_code_within(PROMPT_S)
    assert code in (0, 128 + signal.SIGTERM), run_all.output()


def test_bursts_during_the_graceful_stop_end_it_at_once(run_all: RunAll) -> None:
    os.kill(run_all.proc.pid, signal.SIGTERM)
    time.sleep(0.05)  # the graceful stop has begun
    for _ in range(20):
        os.kill(run_all.proc.pid, signal.SIGTERM)
        os.kill(run_all.proc.pid, signal.SIGINT)
    assert run_all.exit_code_within(PROMPT_S) != 0, run_all.output()
    assert "second signal: exiting now" in run_all.output()


def test_sigint_then_sigterm_stops_it_at_once(run_all: RunAll) -> None:
    run_all.proc.send_signal(signal.SIGINT)
    time.sleep(0.05)  # the graceful stop has begun
    run_all.proc.send_signal(signal.SIGTERM)
    assert run_all.exit_code_within(PROMPT_S) == 128 + signal.SIGTERM, run_all.output()


def test_one_sigterm_is_a_graceful_stop(run_all: RunAll) -> None:
    run_all.proc.send_signal(signal.SIGTERM)
    assert run_all.exit_code_within(45) == 0, run_all.output()
    output = run_all.output()
    assert "shutdown.requested" in output and "SIGTERM" in output
    assert "service.stopped" in output
