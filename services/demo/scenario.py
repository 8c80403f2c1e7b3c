"""The demo's scenario file: what to publish when, and which outcomes to wait for.

A scenario is YAML (see `examples/demo/scenario.yaml`, which the default run plays):

- `steps`: inbound messages. Each has an `id`, a `channel` (chat, email, phone,
  helpdesk), a `file` (relative to the scenario) or an inline `body` (a mapping is sent
  as JSON, a string as it is), an optional `content_type` (default: `message/rfc822`
  for `.eml` files, else JSON), and `created`: how long before its publication the
  customer submitted it (`-29m35s`; default `0s`). `created` is written into the body's
  timestamp (chat `started_at` and message times, email `received_at` or the MIME
  `Date:` header, phone `requested_at`, helpdesk `at`). A helpdesk step names the step
  whose ticket it updates with `ticket`.
- When a step goes out: `at` (time after the start), or `after` an event (see below)
  plus an optional `delay`.
- `expect`: the outcomes the demo waits for; it ends once all happened (exit 0) or at
  `timeout` (exit 1, naming what did not happen).

An event match is `event` (a routing key or its first words: `sla.breached` matches
`sla.breached.business_critical`; `dead_letter` is a message in a dead-letter queue),
and optionally `step` (the event is about that step's ticket, or is its dead letter),
`reason`, `level`, `person` (of an escalation).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

from services.common.durations import parse_duration
from services.runtime.yaml_files import (
    ConfigFileError,
    LocatedError,
    YamlInvalid,
    line_of,
    parse,
    path_text,
    validate_yaml,
)

KNOWN_EVENTS = (
    "ticket.opened",
    "ticket.updated",
    "ticket.responded",
    "ticket.reclassified",
    "ticket.exempted",
    "ticket.resolved",
    "sla.scheduled",
    "sla.warning",
    "sla.breached",
    "sla.met",
    "escalation.sent",
    "escalation.failed",
    "escalation.acknowledged",
    "dead_letter",
)


class ScenarioError(ConfigFileError):
    """A scenario file that cannot be played; the message names the file and the line."""


def _seconds(value: Any) -> float:
    """`25s`, `1m30s` or a number of seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return parse_duration(value).total_seconds()


def _offset(value: Any) -> float:
    """`-29m35s` (that long ago) or `0s`; returns seconds before publication."""
    text = str(value).strip()
    if text in ("0", "0s"):
        return 0.0
    if not text.startswith("-"):
        raise ValueError(f"expected a time in the past like -29m35s (or 0s), got {value!r}")
    return parse_duration(text[1:]).total_seconds()


Seconds = Annotated[float, BeforeValidator(_seconds)]
Ago = Annotated[float, BeforeValidator(_offset)]
StepId = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EventMatch(_Model):
    event: str
    step: StepId | None = None
    reason: str | None = None
    level: int | None = Field(default=None, ge=0)
    person: str | None = None

    @model_validator(mode="after")
    def _known(self) -> EventMatch:
        if not any(self.event == k or self.event.startswith(k + ".") for k in KNOWN_EVENTS):
            raise LocatedError(
                ("event",), f"unknown event {self.event!r}; known: {', '.join(KNOWN_EVENTS)}"
            )
        return self


class Expect(EventMatch):
    label: str | None = Field(default=None, description="How the summary names it")

    @property
    def title(self) -> str:
        if self.label:
            return self.label
        extra = [f"{k} {v}" for k, v in (("reason", self.reason), ("level", self.level)) if v]
        return " ".join([self.event, *([f"({', '.join(extra)})"] if extra else [])])


class Step(_Model):
    id: StepId
    channel: Literal["chat", "email", "phone", "helpdesk"]
    note: str = ""
    file: Path | None = None
    body: dict[str, Any] | str | None = None
    content_type: str | None = None
    created: Ago = 0.0
    ticket: StepId | None = Field(default=None, description="helpdesk: whose ticket_id")
    at: Seconds | None = None
    after: EventMatch | None = None
    delay: Seconds = 0.0

    @model_validator(mode="after")
    def _consistent(self) -> Step:
        if (self.file is None) == (self.body is None):
            raise ValueError("a step needs exactly one of file and body")
        if self.at is not None and self.after is not None:
            raise ValueError("a step goes out `at` a time or `after` an event, not both")
        if self.ticket is not None and self.channel != "helpdesk":
            raise LocatedError(("ticket",), "only helpdesk steps name a ticket")
        return self

    @property
    def media_type(self) -> str:
        if self.content_type:
            return self.content_type
        eml = self.file is not None and self.file.suffix.lower() == ".eml"
        return "message/rfc822" if eml else "application/json"


class Scenario(_Model):
    title: str = "premium-support demo"
    accounts: Path | None = None
    oncall: Path | None = None
    policy: Path | None = None
    timeout: Seconds = 90.0
    steps: list[Step] = Field(min_length=1)
    expect: list[Expect] = Field(description="What must happen; the demo ends when it all did")

    @field_validator("expect")
    @classmethod
    def _something_expected(cls, value: list[Expect]) -> list[Expect]:
        if not value:
            raise ValueError("name at least one outcome: the demo ends when they all happened")
        return value

    @model_validator(mode="after")
    def _references(self) -> Scenario:
        seen: set[str] = set()
        for i, step in enumerate(self.steps):
            if step.id in seen:
                raise LocatedError(("steps", i, "id"), f"duplicate step id {step.id!r}")
            for loc, ref in ((("ticket",), step.ticket), (("after", "step"), _ref(step.after))):
                if ref is not None and ref not in seen:
                    raise LocatedError(("steps", i, *loc), f"{ref!r} is not an earlier step")
            seen.add(step.id)
        for i, expect in enumerate(self.expect):
            if expect.step is not None and expect.step not in seen:
                raise LocatedError(("expect", i, "step"), f"unknown step {expect.step!r}")
        return self


def _ref(match: EventMatch | None) -> str | None:
    return match.step if match else None


def load_scenario(path: Path) -> Scenario:
    """Validate `path`; file paths inside are made absolute (relative to the scenario)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), [(None, f"cannot read it: {exc.strerror}")]) from None
    try:
        scenario = validate_yaml(Scenario, text, "a mapping with steps and expect")
    except YamlInvalid as exc:
        raise ScenarioError(str(path), exc.problems) from None
    return _resolve(scenario, path, text)


def _resolve(scenario: Scenario, path: Path, text: str) -> Scenario:
    base = path.resolve().parent
    _, root = parse(text)
    problems: list[tuple[int | None, str]] = []

    def here(value: Path | None, loc: tuple[str | int, ...]) -> Path | None:
        if value is None:
            return None
        full = base / value
        if not full.is_file():
            problems.append((line_of(root, loc), f"{path_text(loc)}: no file {full}"))
        return full

    steps = [
        s.model_copy(update={"file": here(s.file, ("steps", i, "file"))})
        for i, s in enumerate(scenario.steps)
    ]
    files = {k: here(getattr(scenario, k), (k,)) for k in ("accounts", "oncall", "policy")}
    if problems:
        raise ScenarioError(str(path), problems)
    return scenario.model_copy(update={"steps": steps, **files})
