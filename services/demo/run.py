"""Play a scenario through the in-process pipeline, show it, and judge the outcome."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.text import Text

from services.demo.bodies import prepare
from services.demo.pipeline import Files, Pipeline, Seen
from services.demo.scenario import Scenario, Step
from services.demo.state import DemoState, message_id
from services.demo.view import describe, live_view, summary
from services.runtime.logging import configure_logging

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
DEFAULT_SCENARIO = EXAMPLES / "demo" / "scenario.yaml"
GRACE_S = 1.0  # after the last expected outcome: let the events right behind it show
TICK_S = 0.1


class Player:
    """Decides when each step goes out: `at` after the start, or `delay` after the first
    event matching its `after` (a helpdesk step also waits for its ticket to exist)."""

    def __init__(self, scenario: Scenario, state: DemoState) -> None:
        self.pending = list(scenario.steps)
        self.state = state
        self.triggered: dict[str, float] = {}

    def saw(self, seen: Seen) -> None:
        for step in self.pending:
            after = step.after if step.id not in self.triggered else None
            if after is not None and self.state.matches(after, seen):
                self.triggered[step.id] = seen.at

    def ready(self, elapsed: float) -> list[Step]:
        out = []
        for step in self.pending:
            start = self.triggered.get(step.id) if step.after else (step.at or 0.0)
            waiting_ticket = step.ticket is not None and step.ticket not in self.state.step_tickets
            if start is not None and elapsed >= start + step.delay and not waiting_ticket:
                out.append(step)
        self.pending = [s for s in self.pending if s not in out]
        return out


def _files(scenario: Scenario) -> Files:
    return Files(
        accounts=scenario.accounts or EXAMPLES / "accounts.yaml",
        oncall=scenario.oncall or EXAMPLES / "demo" / "oncall.yaml",
        policy=scenario.policy,
    )


@contextmanager
def _display(console: Console, state: DemoState) -> Iterator[Callable[[float], None]]:
    """A live view on a terminal; elsewhere (pipes, CI, tests) only the printed lines."""
    if not console.is_terminal:
        yield lambda _: None
        return
    try:
        with Live(console=console, refresh_per_second=4, transient=True) as live:
            # Log lines go through rich's stand-in for stderr while the view is up, so
            # they print above the view instead of tearing it.
            configure_logging("console", "warning")
            yield lambda elapsed: live.update(live_view(state, elapsed))
    finally:
        configure_logging("console", "warning")  # the real stderr again


def run_demo(console: Console, scenario: Scenario, timeout_s: float | None = None) -> int:
    """Run `scenario` to its end; 0 when every expected outcome happened, else 1."""
    state = DemoState(scenario)
    player = Player(scenario, state)
    timeout = timeout_s or scenario.timeout
    with Pipeline(_files(scenario)) as pipeline, _display(console, state) as refresh:
        _play(console, pipeline, player, refresh, timeout)
        elapsed = pipeline.elapsed()
    console.print(summary(state, elapsed, [s.id for s in player.pending]))
    missing = [o.expect.title for o in state.outcomes if o.at is None]
    if missing:
        head = f"{len(missing)} expected outcome(s) did not happen within {timeout:g}s: "
        console.print(Text(head, style="bold red") + Text("; ".join(missing)))
        return 1
    console.print(f"[green]All {len(state.outcomes)} expected outcomes happened.[/]")
    return 0


def _play(
    console: Console,
    pipeline: Pipeline,
    player: Player,
    refresh: Callable[[float], None],
    timeout: float,
) -> None:
    """Publish steps as they fall due and report what comes back, until every expected
    outcome happened (and `GRACE_S` more passed) or `timeout`."""
    state = player.state

    def say(at: float, line: str) -> None:
        console.print(f"t+{at:5.1f}s  {line}", markup=False, highlight=False, soft_wrap=True)

    done_at: float | None = None
    while (elapsed := pipeline.elapsed()) < timeout:
        for step in player.ready(elapsed):
            _publish(pipeline, state, step)
            say(elapsed, f"published {step.id} on inbound.{step.channel}: {step.note}")
        for seen in pipeline.poll():
            state.observe(seen)
            player.saw(seen)
            say(seen.at, describe(seen, state))
        if state.done and not player.pending:
            done_at = done_at if done_at is not None else elapsed
            if elapsed - done_at >= GRACE_S:
                return
        refresh(elapsed)
        time.sleep(TICK_S)


def _publish(pipeline: Pipeline, state: DemoState, step: Step) -> None:
    ticket = state.step_tickets.get(step.ticket) if step.ticket else None
    body = prepare(step, datetime.now(UTC), ticket)
    pipeline.publish(step.channel, body, step.media_type, message_id(step.id))
