"""The README works as written: its shell blocks, run in order, against the local broker.

Every ```sh and ```bash block of README.md runs top to bottom, as a person would type
it, in a fresh copy of the checkout (the same .venv, its own store files and its own
AMQP_PREFIX, so its exchanges and queues are its own). The HTML comment right above a
block says how it runs:

- none: in "terminal 1". Every command must exit 0 (`bash -e -o pipefail`); what a
  block exports and where it cds carry over to the next, as in one terminal.
- `background port=N`: a terminal of its own: started from a fresh environment (nothing
  terminal 1 exported; a block that needs variables must set them itself), waited for
  until port N listens, kept running, and stopped at the end as Ctrl-C stops it (SIGINT
  to its process group). It must still be running then.
- `retry 20s`: like none, but run again until it succeeds and shows what it must, for up
  to that long: a read of something the running services are still doing.
- `skip REASON`: not run (the test suite itself, docker compose, benchmarks).

The commands are run exactly as written but for two things that must differ between
runs on a shared machine: the ports 8025, 8099 and 9100 become free ones (in the blocks
and in the copy's `examples/local/`), and the broker URL becomes the test's broker when
that is not the README's local one. Every ticket id a command uses must have been
printed by an earlier command (also an id in an example file a command publishes, like
the acknowledgement's). At the end the page and its acknowledgement must have
reached the HTTP sink and the email the SMTP sink.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.sinks import free_port

README_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
PORTS = (8025, 8099, 9100)
TICKET_ID = re.compile(r"T-(?:chat|email|phone)-[0-9a-f]{16}")
MARKER = re.compile(r"^<!--\s*readme-test:\s*(\w+)\s*(.*?)\s*-->$")
# What a block must print, by a command it contains (a retried block runs until it does).
EXPECT = {
    "make demo": ["expected outcomes happened"],
    "topology declare": ["declared"],
    "publish --now email examples/inbound/email.json": [r"ticket T-email-[0-9a-f]{16}"],
    "sla explain": [r"SLA clock T-email-", "email-super-admin-business-critical"],
    "publish chat broken-chat.json": [r"dead-letter it \(schema_violation\)"],
    "dlq list intake.inbound": ["schema_violation"],
    "/healthz": [r'"status": "ok"'],
    "/metrics": [r'notifications_sent_total\{.*channel="paging_webhook"'],
}
# What must have reached the sinks, by a command of the background block that runs it.
SINK_EXPECT = {
    "sink http": [r"POST /pagerduty/kim", r'"event_action": "trigger"', "acknowledge"],
    "aiosmtpd": ["mira@support.example", "T-email-"],
}
KEEP_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR")


@dataclass
class Block:
    line: int
    text: str
    kind: str = "run"  # run | background | retry | skip
    arg: str = ""

    def expected(self, table: dict[str, list[str]]) -> list[str]:
        return [p for command, patterns in table.items() if command in self.text for p in patterns]

    def commands(self) -> str:
        """The block without comments, to look for the ids it uses."""
        return "\n".join(line.split(" #")[0] for line in self.text.splitlines() if line[:1] != "#")


def readme_blocks(text: str) -> list[Block]:
    lines, blocks, i = text.splitlines(), [], 0
    while i < len(lines):
        if lines[i].strip() not in ("```sh", "```bash"):
            i += 1
            continue
        end = lines.index("```", i + 1)
        block = Block(line=i + 1, text="\n".join(lines[i + 1 : end]) + "\n")
        before = next((ln.strip() for ln in reversed(lines[:i]) if ln.strip()), "")
        if marker := MARKER.match(before):
            block.kind, block.arg = marker.group(1), marker.group(2)
            assert block.kind in ("background", "retry", "skip"), (block.line, before)
            assert block.kind != "skip" or block.arg, f"line {block.line}: a skip needs a reason"
        blocks.append(block)
        i = end + 1
    return blocks


@dataclass
class Walkthrough:
    """A copy of the checkout and the terminals the README's blocks run in."""

    root: Path
    env: dict[str, str]
    state: Path
    replace: dict[str, str]  # ports and broker URL: the README's -> this run's
    outputs: list[str] = field(default_factory=list)
    background: list[tuple[Block, subprocess.Popen[bytes], Path]] = field(default_factory=list)

    def run(self, block: Block) -> None:
        used = set(TICKET_ID.findall(block.commands()))
        for word in block.commands().split():  # and the ids in the files it publishes
            if (self.root / word).is_file() and word.startswith("examples/"):
                used |= set(TICKET_ID.findall((self.root / word).read_text(errors="replace")))
        seen = set(TICKET_ID.findall("".join(self.outputs)))
        assert used <= seen, f"line {block.line}: {used - seen} not printed by a command before"
        if block.kind == "background":
            return self.start(block)
        patience = float(block.arg.removesuffix("s")) if block.kind == "retry" else 0.0
        deadline = time.monotonic() + patience
        while True:
            result = self.terminal_1(block)
            out = result.stdout + result.stderr
            missing = [p for p in block.expected(EXPECT) if not re.search(p, out)]
            if (result.returncode == 0 and not missing) or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert result.returncode == 0, f"line {block.line}: exit {result.returncode}\n{out}"
        assert not missing, f"line {block.line}: {missing} not in the output\n{out}"
        self.outputs.append(out)

    def terminal_1(self, block: Block) -> subprocess.CompletedProcess[str]:
        """The block in a shell that starts with what the blocks before it exported."""
        script = (
            f'set -eo pipefail\n. "{self.state}"\ncd "$README_PWD"\n{block.text}'
            f'README_PWD="$PWD"\nexport -p > "{self.state}"\n'
        )
        return subprocess.run(
            ["bash", "-c", script],
            env=self.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=150,
        )

    def start(self, block: Block) -> None:
        log = self.root.parent / f"terminal-{len(self.background) + 2}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                ["bash", "-c", f"set -eo pipefail\n{block.text}"],
                cwd=self.root,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )
        self.background.append((block, proc, log))
        port = int(block.arg.removeprefix("port="))
        deadline = time.monotonic() + 30
        while not _listens(port):
            assert proc.poll() is None, f"line {block.line} exited:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"line {block.line}: port {port} never listened"
            time.sleep(0.2)

    def stop(self) -> None:
        """Ctrl-C in each terminal, the last started first: SIGINT to its process group,
        then wait until the whole group is gone (SIGKILL after 20 s)."""
        for _, proc, _ in reversed(self.background):
            _signal_group(proc.pid, signal.SIGINT)
            deadline = time.monotonic() + 20
            # poll() reaps the group's leader: a zombie would still count as in the group.
            while (proc.poll() is None or _signal_group(proc.pid, 0)) and (
                time.monotonic() < deadline
            ):
                time.sleep(0.1)
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()


def _signal_group(pgid: int, sig: int) -> bool:
    """Signal the process group; False when none of it is left."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    return True


def _listens(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def fresh_copy(dest: Path, replace: dict[str, str]) -> Path:
    """The checkout's files as they are (tracked, and new ones git does not ignore: no
    history, caches or stores), the shared .venv linked in. `replace` is applied to the
    files the walk-through reads (`examples/local/`)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (ROOT / name).is_file():  # not a file deleted in the working tree
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    for path in (dest / "examples" / "local").iterdir():
        path.write_text(_replaced(path.read_text(), replace))
    # The copy's pyproject.toml is older than the venv's stamp, so `make venv` finds the
    # shared venv up to date instead of reinstalling it (editable, pointing at the copy).
    stamp = (ROOT / ".venv" / ".installed").stat().st_mtime
    os.utime(dest / "pyproject.toml", (stamp - 60, stamp - 60))
    return dest


def _replaced(text: str, replace: dict[str, str]) -> str:
    for old, new in replace.items():
        text = re.sub(rf"(?<![\w.]){re.escape(old)}(?![\w])", new, text)
    return text


@pytest.fixture
def walkthrough(tmp_path: Path, amqp_url: str, prefix: str) -> Iterator[Walkthrough]:
    free: set[int] = set()
    while len(free) < len(PORTS):
        free.add(free_port())
    replace = {str(port): str(new) for port, new in zip(PORTS, sorted(free), strict=True)}
    if amqp_url != README_BROKER:
        replace[README_BROKER] = amqp_url
    root = fresh_copy(tmp_path / "checkout", replace)
    state = tmp_path / "terminal-1.env"
    state.write_text(f'export README_PWD="{root}"\n')
    env = {k: v for k, v in os.environ.items() if k in KEEP_ENV}
    env |= {"AMQP_PREFIX": prefix, "PYTHONUNBUFFERED": "1", "COLUMNS": "160"}
    walk = Walkthrough(root=root, env=env, state=state, replace=replace)
    yield walk
    walk.stop()


def test_the_readme_works_as_written(walkthrough: Walkthrough) -> None:
    text = _replaced((ROOT / "README.md").read_text(), walkthrough.replace)
    blocks = readme_blocks(text)
    for block in blocks:
        if block.kind != "skip":
            walkthrough.run(block)

    ran = "".join(b.text for b in blocks if b.kind != "skip")
    for command in ("make demo", "run all", "sla explain", "dlq list", *SINK_EXPECT):
        assert command in ran, f"the README no longer runs {command!r}"
    # What the notifier sent has reached the sinks (a moment after the last command).
    deadline = time.monotonic() + 20
    for block, proc, log in walkthrough.background:
        for pattern in block.expected(SINK_EXPECT):
            while not re.search(pattern, log.read_text()) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert re.search(pattern, log.read_text()), (pattern, log.read_text()[-3000:])
        assert proc.poll() is None, f"line {block.line} stopped early:\n{log.read_text()}"


def test_the_readme_and_docs_link_only_to_files_in_the_repository() -> None:
    for page in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        for target in re.findall(r"\]\(([^)\s]+)\)", page.read_text()):
            path = target.split("#")[0]
            if not path:  # an anchor on the same page
                continue
            assert "://" not in target, f"{page.name} links outside the repository: {target}"
            assert (page.parent / path).resolve().is_relative_to(ROOT), (page.name, target)
            assert (page.parent / path).exists(), f"{page.name}: {target} does not exist"
