"""Generate the committed contract files from the pydantic models (DESIGN.md section 5).

`render_all()` gives every file's text; `export()` writes them under `schemas/` or, with
`check=True`, reports drift (a test runs it). Regenerate with `python -m schemas.export`.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel, TypeAdapter

from schemas.asyncapi import render_asyncapi
from schemas.events import EVENT_TYPES, CloudEvent
from schemas.inbound import ChatRequest, EmailForm, HelpdeskUpdate, PhoneRequest
from schemas.ticket import Ticket

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "https://premium-support.example/schemas/"
JSON_DIR = "json"
SCHEMA_SUFFIX = ".schema.json"
ASYNCAPI_FILE = "asyncapi.yaml"
DEFAULT_ROOT = Path(__file__).parent


def json_models() -> dict[str, type[BaseModel] | TypeAdapter[Any]]:
    """Every model that gets a JSON Schema file, by name."""
    models: dict[str, type[BaseModel] | TypeAdapter[Any]] = {
        "ChatRequest": ChatRequest,
        "EmailForm": EmailForm,
        "PhoneRequest": PhoneRequest,
        "HelpdeskUpdate": TypeAdapter(HelpdeskUpdate),
        "Ticket": Ticket,
        "CloudEvent": CloudEvent,
    }
    for model, _prefix in EVENT_TYPES.values():
        models[model.__name__] = model
    return models


def schema_file(name: str) -> str:
    """`HelpdeskUpdate` -> `json/helpdesk-update.schema.json`."""
    return f"{JSON_DIR}/{re.sub(r'(?<!^)(?=[A-Z])', '-', name).lower()}{SCHEMA_SUFFIX}"


def _json_schema(name: str, model: type[BaseModel] | TypeAdapter[Any], file: str) -> str:
    if isinstance(model, TypeAdapter):
        schema = model.json_schema()
        schema.setdefault("title", name)
    else:
        schema = model.model_json_schema()
    schema["$schema"] = SCHEMA_DIALECT
    schema["$id"] = ID_BASE + file
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def render_all() -> dict[str, str]:
    """Relative file name -> file text, for every generated file."""
    files = {name: schema_file(name) for name in json_models()}
    out = {
        files[name]: _json_schema(name, model, files[name]) for name, model in json_models().items()
    }
    out[ASYNCAPI_FILE] = render_asyncapi(files)
    return out


def export(root: Path = DEFAULT_ROOT, check: bool = False) -> list[str]:
    """Write the generated files under `root`, or with `check` only compare.

    With `check=True` nothing is written; the result lists the files that are missing,
    differ, or are stale (a `json/*.schema.json` file that is no longer generated).
    Otherwise the result lists the files written (only those that changed) and the stale
    files removed; an empty list means everything was up to date.
    """
    rendered = render_all()
    changed: list[str] = []
    for rel, text in rendered.items():
        path = root / rel
        if path.is_file() and path.read_text(encoding="utf-8") == text:
            continue
        changed.append(rel)
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8", newline="\n")
    for path in sorted((root / JSON_DIR).glob(f"*{SCHEMA_SUFFIX}")):
        rel = path.relative_to(root).as_posix()
        if rel not in rendered:
            changed.append(rel)
            if not check:
                path.unlink()
    return changed


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    check = "--check" in args
    changed = export(DEFAULT_ROOT, check=check)
    verb = "out of date" if check else "updated"
    for rel in changed:
        print(f"{verb}: schemas/{rel}")
    if not changed:
        print("schemas: up to date")
    return 1 if check and changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
