"""The committed contract files (schemas/json, schemas/asyncapi.yaml) and the inbound models."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError

from schemas.asyncapi import SCHEMA_FORMAT, has_severity
from schemas.events import EVENT_TYPES, CloudEvent
from schemas.export import ASYNCAPI_FILE, export, render_all, schema_file
from schemas.inbound import (
    ChatRequest,
    EmailForm,
    FirstResponse,
    HelpdeskUpdate,
    PhoneRequest,
    Reclassified,
    Severity,
)

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
INBOUND_KEYS = ["inbound.chat", "inbound.email", "inbound.phone", "inbound.helpdesk"]
HELPDESK = TypeAdapter(HelpdeskUpdate)


# --- drift ---------------------------------------------------------------------------------


def test_committed_files_match_the_models() -> None:
    assert export(SCHEMAS_DIR, check=True) == [], "run `python -m schemas.export`"


@pytest.fixture
def copy(tmp_path: Path) -> Path:
    root = tmp_path / "schemas"
    assert export(root) == list(render_all())
    assert export(root, check=True) == []
    return root


def test_check_detects_a_modified_file(copy: Path) -> None:
    path = copy / "json" / "ticket.schema.json"
    path.write_text(path.read_text().replace('"ticket_id"', '"ticketId"'))
    (copy / ASYNCAPI_FILE).write_text((copy / ASYNCAPI_FILE).read_text() + "# edited\n")
    assert export(copy, check=True) == ["json/ticket.schema.json", ASYNCAPI_FILE]


def test_check_detects_a_missing_and_a_stale_file(copy: Path) -> None:
    (copy / "json" / "sla-met.schema.json").unlink()
    (copy / "json" / "old-thing.schema.json").write_text("{}\n")
    before = {p.name: p.stat().st_mtime_ns for p in (copy / "json").iterdir()}
    assert export(copy, check=True) == ["json/sla-met.schema.json", "json/old-thing.schema.json"]
    assert {p.name: p.stat().st_mtime_ns for p in (copy / "json").iterdir()} == before
    # without check it repairs both
    assert export(copy) == ["json/sla-met.schema.json", "json/old-thing.schema.json"]
    assert not (copy / "json" / "old-thing.schema.json").exists()
    assert export(copy, check=True) == []


def test_json_schema_files_are_well_formed() -> None:
    files = sorted((SCHEMAS_DIR / "json").glob("*.schema.json"))
    assert len(files) == 6 + len(EVENT_TYPES)
    for path in files:
        text = path.read_text()
        schema = json.loads(text)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"https://premium-support.example/schemas/json/{path.name}"
        assert text == json.dumps(schema, indent=2, sort_keys=True) + "\n"
        assert schema.get("title"), path.name


# Keywords that Draft 2020-12 added or whose meaning changed since draft-07: absent, the
# files read the same as draft-07, the schemaFormat the AsyncAPI document gives them.
NOT_IN_DRAFT_07 = {
    "prefixItems",
    "$dynamicRef",
    "$dynamicAnchor",
    "$recursiveRef",
    "$anchor",
    "unevaluatedItems",
    "unevaluatedProperties",
    "dependentRequired",
    "dependentSchemas",
    "minContains",
    "maxContains",
}


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keys(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keys(v)}
    return set()


def test_json_schema_files_read_the_same_as_draft_07() -> None:
    for path in sorted((SCHEMAS_DIR / "json").glob("*.schema.json")):
        schema = json.loads(path.read_text())
        for items in _items(schema):
            assert isinstance(items, dict | bool), f"{path.name}: array-form items"
        assert not _keys(schema) & NOT_IN_DRAFT_07, path.name


def _items(node: Any) -> list[Any]:
    if isinstance(node, dict):
        own = [node["items"]] if "items" in node else []
        return own + [i for v in node.values() for i in _items(v)]
    if isinstance(node, list):
        return [i for v in node for i in _items(v)]
    return []


# --- AsyncAPI ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((SCHEMAS_DIR / ASYNCAPI_FILE).read_text())
    return loaded


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _resolve(doc: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), ref
    node: Any = doc
    for part in ref[2:].split("/"):
        assert isinstance(node, dict) and part in node, f"dangling {ref}"
        node = node[part]
    return node


def test_asyncapi_document_is_consistent(doc: dict[str, Any]) -> None:
    assert doc["asyncapi"] == "3.0.0"
    assert doc["info"]["title"] and doc["info"]["version"] and doc["info"]["description"]
    assert doc["servers"]["production"] == {
        **doc["servers"]["production"],
        "host": "localhost:5672",
        "protocol": "amqp",
        "protocolVersion": "0-9-1",
    }
    refs = _refs(doc)
    files = [r for r in refs if r.startswith("./")]
    assert files, "payloads reference the JSON Schema files"
    for ref in files:
        assert ref.startswith("./json/") and (SCHEMAS_DIR / ref).is_file(), ref
    for ref in refs:
        if ref.startswith("#/"):
            _resolve(doc, ref)
    messages = doc["components"]["messages"]
    for mid, msg in messages.items():
        # pydantic's JSON Schema is not the AsyncAPI dialect: every payload says so, and
        # persistence is an operation binding (the official parser checks both in depth)
        assert msg["payload"]["schemaFormat"] == SCHEMA_FORMAT, mid
        assert "deliveryMode" not in msg.get("bindings", {}).get("amqp", {}), mid
    for cid, channel in doc["channels"].items():
        assert channel["messages"], cid
        for mid, msg in channel["messages"].items():
            assert _resolve(doc, msg["$ref"]) is messages[mid]
        for name in channel.get("parameters", {}):
            assert "{" + name + "}" in channel["address"]
        amqp = channel["bindings"]["amqp"]
        assert amqp["is"] == "routingKey"
        assert amqp["exchange"]["type"] == "topic" and amqp["exchange"]["durable"] is True
    for oid, op in doc["operations"].items():
        assert op["action"] in {"send", "receive"}, oid
        channel = _resolve(doc, op["channel"]["$ref"])
        for msg in op["messages"]:
            assert msg["$ref"].startswith(op["channel"]["$ref"] + "/messages/")
            assert _resolve(doc, msg["$ref"]) in channel["messages"].values()


def test_asyncapi_covers_the_catalogue(doc: dict[str, Any]) -> None:
    channels = {c["address"]: c for c in doc["channels"].values()}
    exchange = {a: c["bindings"]["amqp"]["exchange"]["name"] for a, c in channels.items()}
    for key in INBOUND_KEYS:
        assert exchange[key] == "support.inbound"
    email = [_resolve(doc, m["$ref"]) for m in channels["inbound.email"]["messages"].values()]
    assert sorted(m["contentType"] for m in email) == ["application/json", "message/rfc822"]
    assert doc["components"]["parameters"]["severity"]["enum"] == list(get_args(Severity))

    by_name = {m["name"]: m for m in doc["components"]["messages"].values()}
    for event_type, (model, prefix) in EVENT_TYPES.items():
        address = f"{prefix}.{{severity}}" if has_severity(prefix) else prefix
        assert exchange[address] == "support.events"
        assert ("parameters" in channels[address]) == has_severity(prefix)
        payload = by_name[event_type]["payload"]
        assert payload["schemaFormat"] == SCHEMA_FORMAT
        envelope, extra = payload["schema"]["allOf"]
        assert envelope == {"$ref": "./json/cloud-event.schema.json"}
        assert extra["properties"]["type"] == {"const": event_type}
        assert extra["properties"]["data"] == {"$ref": f"./{schema_file(model.__name__)}"}
    assert has_severity("ticket.opened") and has_severity("sla.breached")
    assert not has_severity("ticket.reclassified")


def _sample_data(model: type[BaseModel]) -> dict[str, Any]:
    if "severity" in model.model_fields:
        return {"severity": "standard"}
    if "ticket" in model.model_fields:
        return {"ticket": {"severity": "standard"}}
    return {}


@pytest.mark.parametrize("event_type", list(EVENT_TYPES))
def test_envelope_routing_key_matches_the_asyncapi_address(
    doc: dict[str, Any], event_type: str
) -> None:
    model, _prefix = EVENT_TYPES[event_type]
    event = CloudEvent(
        id="e-1",
        source="/premium-support/intake",
        type=event_type,
        subject="T-email-0123456789abcdef",
        time=datetime(2026, 11, 27, 9, 58, 2, tzinfo=UTC),
        correlationid="m-1",
        data=_sample_data(model),
    )
    addresses = {c["address"].replace("{severity}", "standard") for c in doc["channels"].values()}
    assert event.routing_key in addresses


# --- inbound payloads (DESIGN.md section 4) ------------------------------------------------

CHAT: dict[str, Any] = {
    "conversation_id": "c-7781",
    "portal_id": 4411,
    "started_at": "2026-11-27T09:58:02Z",
    "visitor": {"user_id": "u-19", "email": "ana@acme.example", "name": "Ana Ruiz"},
    "messages": [
        {
            "from": "visitor",
            "at": "2026-11-27T09:58:02Z",
            "text": "Nobody on our team can log in since 9:50",
        }
    ],
    "language": "en",
}
EMAIL: dict[str, Any] = {
    "message_id": "<f00d@mail.acme.example>",
    "portal_id": 4411,
    "from": "Ana Ruiz <ana@acme.example>",
    "subject": "Login outage",
    "text": "...",
    "html": None,
    "received_at": "2026-11-27T09:58:02Z",
    "in_reply_to": None,
    "references": [],
    "form": {"business_critical": True, "user_id": "u-19"},
}
PHONE: dict[str, Any] = {
    "call_id": "CA9f2",
    "portal_id": 4411,
    "kind": "callback_request",
    "caller_number": "+31 20 555 0134",
    "caller_user_id": None,
    "requested_at": "2026-11-27T09:58:02Z",
    "ivr": {"business_critical": True, "language": "en"},
    "transcript": "...",
}
_T: dict[str, Any] = {"ticket_id": "T-email-0123456789abcdef", "at": "2026-11-27T10:04:00+01:00"}
UPDATES = [
    {"type": "first_response", **_T, "agent": "sam"},
    {"type": "reclassified", **_T, "severity": "standard", "reason": "not an outage"},
    {"type": "exempted", **_T, "reason": "customer asked to wait"},
    {"type": "resolved", **_T},
    {"type": "acknowledged", **_T, "by": "oncall-user-id"},
]
INBOUND: list[tuple[type[BaseModel], dict[str, Any], str]] = [
    (ChatRequest, CHAT, "started_at"),
    (EmailForm, EMAIL, "from"),
    (PhoneRequest, PHONE, "kind"),
]


@pytest.mark.parametrize(("model", "payload", "required"), INBOUND)
def test_design_examples_validate(
    model: type[BaseModel], payload: dict[str, Any], required: str
) -> None:
    model.model_validate(payload)
    model.model_validate_json(json.dumps(payload))
    with pytest.raises(ValidationError):
        model.model_validate({k: v for k, v in payload.items() if k != required})


def test_design_helpdesk_examples_validate() -> None:
    parsed = [HELPDESK.validate_python(u) for u in UPDATES]
    assert [type(p).__name__ for p in parsed] == [
        "FirstResponse",
        "Reclassified",
        "Exempted",
        "Resolved",
        "Acknowledged",
    ]
    assert isinstance(parsed[0], FirstResponse) and parsed[0].agent == "sam"
    assert isinstance(parsed[1], Reclassified) and parsed[1].severity == "standard"


@pytest.mark.parametrize(
    "bad",
    [
        {"type": "first_response", **_T},  # no agent
        {"type": "exempted", **_T},  # no reason
        {"type": "resolved", "ticket_id": _T["ticket_id"]},  # no at
        {"type": "reopened", **_T},  # unknown type
        {"type": "resolved", **_T, "ticket_id": "T-..."},  # malformed id
        {"type": "resolved", **_T, "at": "2026-11-27T10:04:00"},  # no offset
        {"type": "reclassified", **_T, "severity": "urgent"},
    ],
)
def test_bad_helpdesk_updates_are_rejected(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        HELPDESK.validate_python(bad)


def test_unknown_fields_are_accepted_and_kept() -> None:
    chat = ChatRequest.model_validate(
        {
            **CHAT,
            "widget_version": "4.2",
            "visitor": {**CHAT["visitor"], "plan": "gold"},
        }
    )
    assert chat.model_extra == {"widget_version": "4.2"}
    assert chat.visitor.model_extra == {"plan": "gold"}
    assert chat.messages[0].from_ == "visitor"
    email = EmailForm.model_validate({**EMAIL, "x_mailer": "acme"})
    assert email.model_extra == {"x_mailer": "acme"}
    update = HELPDESK.validate_python({**UPDATES[3], "helpdesk": "zendesk"})
    assert update.model_extra == {"helpdesk": "zendesk"}


def test_check_lists_only_what_is_missing(tmp_path: Path) -> None:
    shutil.copytree(SCHEMAS_DIR / "json", tmp_path / "json")
    assert export(tmp_path, check=True) == [ASYNCAPI_FILE]
