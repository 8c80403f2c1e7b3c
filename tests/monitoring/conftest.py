"""`promtool`, for the checks of deploy/prometheus: on PATH, or unpacked from Debian's
`prometheus` package into .cache/promtool by `make test` (the Makefile's promtool target)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.support.broker import missing

UNPACKED = ROOT / ".cache" / "promtool" / "usr" / "bin" / "promtool"


@pytest.fixture(scope="session")
def promtool() -> Path:
    found = shutil.which("promtool")
    path = Path(found) if found else UNPACKED
    if not path.is_file():
        missing(
            "promtool is not installed: `make promtool` unpacks it from Debian's "
            "prometheus package into .cache/promtool"
        )
    return path


def run_promtool(promtool: Path, *args: str | Path, cwd: Path = ROOT) -> str:
    """Run promtool; fail the test with its whole output unless it exits 0."""
    done = subprocess.run(
        [str(promtool), *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=120
    )
    output = (done.stdout + done.stderr).strip()
    assert done.returncode == 0, f"promtool {' '.join(map(str, args))}:\n{output}"
    return output
