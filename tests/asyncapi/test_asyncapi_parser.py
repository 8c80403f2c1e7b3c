"""schemas/asyncapi.yaml through the official AsyncAPI parser (@asyncapi/parser).

The parser is installed with `npm ci` from tests/asyncapi/package-lock.json into
.cache/asyncapi (git-ignored), once per lock file: a later run finds it there. Needs
`node` and `npm` (CI has them; elsewhere the tests skip, and fail under CI=true).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.export import ASYNCAPI_FILE, JSON_DIR
from tests.conftest import ROOT
from tests.support.broker import missing

HERE = Path(__file__).resolve().parent
CACHE = ROOT / ".cache" / "asyncapi"
PACKAGE_FILES = ("package.json", "package-lock.json")
SCRIPT = "parse.mjs"
SCHEMAS = ROOT / "schemas"


def _lock_digest() -> str:
    digest = hashlib.sha256()
    for name in PACKAGE_FILES:
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()


def install(cache: Path, npm: str) -> None:
    """`npm ci` into `cache` unless it already holds this lock file's install. A file
    lock keeps two test runs in one checkout from installing over each other."""
    cache.mkdir(parents=True, exist_ok=True)
    stamp = cache / ".installed"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        shutil.copyfile(HERE / SCRIPT, cache / SCRIPT)  # the script may change alone
        if stamp.is_file() and stamp.read_text() == _lock_digest():
            return
        for name in PACKAGE_FILES:
            shutil.copyfile(HERE / name, cache / name)
        done = subprocess.run(
            [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=cache,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if done.returncode != 0:
            missing(f"npm ci of @asyncapi/parser failed:\n{done.stdout}{done.stderr}")
        stamp.write_text(_lock_digest())


@pytest.fixture(scope="session")
def parser_script() -> Path:
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing("Node.js (node and npm) is not installed: the AsyncAPI parser cannot run")
    install(CACHE, npm)
    return CACHE / SCRIPT


def parse(script: Path, document: Path) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        ["node", str(script), str(document)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode in (0, 1), f"parse.mjs exited {done.returncode}:\n{done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return done.returncode, result


def test_the_committed_document_has_no_errors_or_warnings(parser_script: Path) -> None:
    code, result = parse(parser_script, SCHEMAS / ASYNCAPI_FILE)
    report = json.dumps(result["errors"] + result["warnings"], indent=2)
    assert code == 0 and result["parsed"], f"the official parser rejects it:\n{report}"
    assert result["errors"] == [], report
    assert result["warnings"] == [], report


def test_the_parser_finds_a_broken_document(parser_script: Path, tmp_path: Path) -> None:
    """The check is not vacuous: the mistake the generator used to make (a message
    binding with `deliveryMode`, which belongs to the operation) is an error."""
    shutil.copytree(SCHEMAS / JSON_DIR, tmp_path / JSON_DIR)
    doc = yaml.safe_load((SCHEMAS / ASYNCAPI_FILE).read_text())
    message = next(iter(doc["components"]["messages"].values()))
    message["bindings"] = {"amqp": {"deliveryMode": 2, "bindingVersion": "0.3.0"}}
    broken = tmp_path / ASYNCAPI_FILE
    broken.write_text(yaml.safe_dump(doc, sort_keys=False))
    code, result = parse(parser_script, broken)
    assert code == 1 and result["errors"], result
    assert any("bindings" in e["path"] for e in result["errors"]), result["errors"]
