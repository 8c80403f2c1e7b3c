"""Shared field types of the on-call file, its team channel and its when-to-notify rules.

The on-call file as a whole is `services.notifier.oncall_model.OnCall`; this module holds
the parts that say *how* and *when* to notify, so the defaults read in one place.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal, Self
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from schemas.events import Metric
from services.runtime.yaml_files import LocatedError

TEAM = "team"  # the person id of the team channel in notifications; reserved
PersonId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]*$")]
ContactChannel = Literal["email", "chat_webhook", "paging_webhook", "generic_webhook", "console"]
Kind = Literal["page", "remind", "notify"]
_URL = re.compile(r"^https?://[^\s<>\"|]+$")


class FileModel(BaseModel):
    """A section of the on-call file: unknown keys are errors; values are frozen."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown IANA time zone {value!r}") from None
    return value


def check_url(value: str) -> str:
    if not _URL.match(value):
        raise ValueError(f"expected an http(s) URL, got {value!r}")
    return value


Url = Annotated[str, AfterValidator(check_url)]
Zone = Annotated[str, AfterValidator(_zone)]


class TeamChannel(FileModel):
    """Where non-urgent notices and coverage warnings go: a chat webhook, or the console
    (for the demo and for trying the notifier out)."""

    chat_webhook: Url | None = None
    console: bool = False
    name: str = "support team"
    timezone: Zone = "UTC"

    @model_validator(mode="after")
    def _somewhere(self) -> TeamChannel:
        if (self.chat_webhook is None) == (not self.console):
            raise ValueError("a team_channel needs either chat_webhook or console: true")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class NotifyRule(FileModel):
    """Whom a trigger reaches: the people on call at `levels` (as a `kind` of message),
    and/or the team channel digest; `unless_acknowledged` skips acknowledged tickets."""

    levels: list[int] = Field(default_factory=list)
    kind: Kind = "notify"
    team: bool = False
    unless_acknowledged: bool = False


def _rule(**kw: Any) -> Any:
    return Field(default_factory=lambda: NotifyRule(**kw))


class MetricNotifyRules(FileModel):
    """The SLA triggers of one metric other than first_response (`notify.metrics.<name>`).
    By default nobody is paged for them: a missed target or a breach is a team notice,
    a breached guaranteed business-critical clock also tells level 1."""

    warning_guaranteed: NotifyRule = _rule()
    warning_target: NotifyRule = _rule()
    breached_business_critical: NotifyRule = _rule(levels=[1], kind="notify", team=True)
    breached_standard: NotifyRule = _rule(team=True)
    missed_target: NotifyRule = _rule(team=True)

    @model_validator(mode="after")
    def _missed_never_pages(self) -> Self:
        if self.missed_target.kind == "page" and self.missed_target.levels:
            raise LocatedError(("missed_target", "kind"), "a missed target never pages")
        return self


class NotifyRules(MetricNotifyRules):
    """The triggers. Breaches of guaranteed clocks are `breached_*`; of targets,
    `missed_target`. These are first_response's; `metrics` holds the other metrics'."""

    opened_business_critical: NotifyRule = _rule(levels=[1], kind="page")
    opened_standard: NotifyRule = _rule()
    warning_guaranteed: NotifyRule = _rule(levels=[1], kind="remind", unless_acknowledged=True)
    breached_business_critical: NotifyRule = _rule(levels=[1, 2], kind="page")
    breached_standard: NotifyRule = _rule(levels=[1], kind="notify", team=True)
    metrics: dict[Metric, MetricNotifyRules] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _first_response_is_top_level(self) -> Self:
        if "first_response" in self.metrics:
            raise LocatedError(
                ("metrics", "first_response"),
                "first_response's triggers are the ones above (opened_*, warning_*, ...)",
            )
        return self

    def of(self, metric: Metric) -> MetricNotifyRules:
        if metric == "first_response":
            return self
        return self.metrics.get(metric) or MetricNotifyRules()

    def checked(self) -> Iterator[tuple[tuple[str, ...], NotifyRule]]:
        """Every rule the file sets (and first_response's defaults), with its path."""
        for name in NotifyRules.model_fields:
            rule = getattr(self, name)
            if isinstance(rule, NotifyRule):
                yield (name,), rule
        for metric, rules in self.metrics.items():
            for name in rules.model_fields_set:
                yield ("metrics", metric, name), getattr(rules, name)


_PAGE: tuple[ContactChannel, ...] = (
    "paging_webhook",
    "chat_webhook",
    "email",
    "generic_webhook",
    "console",
)
_REMIND: tuple[ContactChannel, ...] = ("chat_webhook", "email", "generic_webhook", "console")
_NOTIFY: tuple[ContactChannel, ...] = ("email", "chat_webhook", "generic_webhook", "console")


class Channels(FileModel):
    """The contact methods each kind of message tries, in order: a person gets it by the
    first one they have (email when they have none of them); while that one fails, by
    the next, and so on round the list until one works. Paging webhooks are for pages
    only."""

    page: list[ContactChannel] = Field(default_factory=lambda: list(_PAGE))
    remind: list[ContactChannel] = Field(default_factory=lambda: list(_REMIND))
    notify: list[ContactChannel] = Field(default_factory=lambda: list(_NOTIFY))

    @model_validator(mode="after")
    def _paging_only_pages(self) -> Channels:
        for kind in ("remind", "notify"):
            if "paging_webhook" in getattr(self, kind):
                raise LocatedError((kind,), "paging_webhook is for pages only")
        return self

    def of(self, kind: Kind) -> list[ContactChannel]:
        chosen: list[ContactChannel] = getattr(self, kind)
        return chosen
